import numpy as np
import pytest

from geoseg.metrics import confusion_matrix, scores


def test_confusion_matrix_by_hand():
    truth = np.array([0, 0, 1, 1, 2, 2, -1])
    pred = np.array([0, 1, 1, 1, 2, 0, 2])
    cm = confusion_matrix(truth, pred, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    s = scores(cm)
    # IoU: class0 1/(2+2-1)=1/3, class1 2/(2+3-2)=2/3, class2 1/(2+1-1)=1/2
    assert s["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert s["overall_accuracy"] == pytest.approx(4 / 6)
    assert s["per_class"]["1"]["precision"] == pytest.approx(2 / 3)
    assert s["per_class"]["2"]["recall"] == pytest.approx(1 / 2)


def test_absent_classes_do_not_count():
    cm = np.array([[5, 0, 0], [0, 0, 0], [0, 0, 5]])
    s = scores(cm)
    assert s["miou"] == 1.0
    assert "1" not in s["per_class"]


def test_scored_classes_leave_the_extra_column_out_of_the_means():
    """Row 0: 3 right, 1 predicted as the extra class (e.g. a childless coarse class)."""
    from geoseg.metrics import fine_confusion_matrix

    truth = np.array([0, 0, 0, 0, 1, 1])
    fine = np.array([0, 0, 0, -1, 1, -1])
    coarse = np.array([0, 0, 0, 3, 0, -1])  # the last pixel is nodata: not scored
    cm = fine_confusion_matrix(truth, fine, coarse, 2, leaf_column=True)
    assert cm.tolist() == [[3, 0, 1], [0, 1, 0], [0, 0, 0]]
    s = scores(cm, ["a", "b", "none"], scored=2)
    assert s["per_class"]["a"]["iou"] == pytest.approx(3 / 4)
    assert s["miou"] == pytest.approx((3 / 4 + 1) / 2)
    assert s["overall_accuracy"] == pytest.approx(4 / 5)
    assert "none" not in s["per_class"]
    assert fine_confusion_matrix(truth, fine, coarse, 2, leaf_column=False).tolist() == [
        [3, 0],
        [0, 1],
    ]


def test_block_bootstrap_interval_widens_with_disagreeing_blocks():
    from geoseg.metrics import bootstrap_intervals

    good = np.array([[9, 1], [1, 9]])
    bad = np.array([[5, 5], [5, 5]])
    same = bootstrap_intervals(np.stack([good] * 10), replicates=200)
    assert same["miou"][0] == same["miou"][1] == pytest.approx(scores(good)["miou"], abs=1e-4)
    mixed = np.stack([good] * 5 + [bad] * 5 + [np.zeros((2, 2), int)])
    ci = bootstrap_intervals(mixed, replicates=500, seed=1)
    point = scores(mixed.sum(axis=0))
    assert ci["blocks"] == 10  # the empty block is not resampled
    assert ci["miou"][0] < point["miou"] < ci["miou"][1]
    assert ci["overall_accuracy"][0] < point["overall_accuracy"] < ci["overall_accuracy"][1]
    assert bootstrap_intervals(mixed, replicates=500, seed=1) == ci  # seeded
    assert bootstrap_intervals(mixed[:1])["miou"] == [None, None]
    # classes beyond `scored` do not enter the mean
    extra = np.zeros((10, 3, 3), int)
    extra[:, :2, :2] = good
    extra[:, 0, 2] = 3
    only2 = bootstrap_intervals(extra, scored=2, replicates=50)
    assert only2["miou"][0] == pytest.approx(scores(extra.sum(axis=0), scored=2)["miou"], abs=1e-4)


def test_paired_bootstrap_difference():
    from geoseg.metrics import bootstrap_intervals

    rng = np.random.default_rng(0)
    hard = rng.integers(1, 20, (12, 3, 3))  # blocks of varied difficulty
    better = hard.copy()
    better[:, [0, 1, 2], [0, 1, 2]] += 10  # 10 more right pixels of each class in every block
    same = bootstrap_intervals(hard, against=hard, replicates=200)
    assert same["miou"] == [0.0, 0.0] and same["blocks"] == 12
    d = bootstrap_intervals(better, against=hard, replicates=300)
    assert 0 < d["miou"][0] < d["miou"][1] and d["overall_accuracy"][0] > 0
    with pytest.raises(ValueError, match="same blocks"):
        bootstrap_intervals(better, against=hard[:5])


def test_the_empty_no_fine_truth_row_is_dropped_and_only_it():
    from geoseg.metrics import NO_FINE, without_no_fine_row

    names = ["11 a", "12 b", NO_FINE]
    cm = np.array([[3, 0, 1], [0, 2, 0], [0, 0, 0]])
    assert without_no_fine_row(cm, names).tolist() == [[3, 0, 1], [0, 2, 0]]
    kept = np.array([[3, 0, 1], [0, 2, 0], [0, 1, 0]])  # never happens: nothing is lost
    assert without_no_fine_row(kept, names).tolist() == kept.tolist()
    square = np.array([[3, 1], [0, 2]])  # a level without the extra class
    assert without_no_fine_row(square, ["1 A", "2 B"]).tolist() == square.tolist()
