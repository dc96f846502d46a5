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
