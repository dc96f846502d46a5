"""geoseg merge: label maps of one area as one, the most confident label at each pixel."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.windows import Window

from geoseg.cli import cli
from geoseg.errors import RasterFormatError, RasterReadError
from geoseg.merge import merge_maps, merged_grid


def _copy(src_path, dest, *, window=None, edit=None, transform=None, tags=True):
    """A copy of a geoseg labels.tif (tags and all), cropped to ``window`` and edited."""
    with rasterio.open(src_path) as src:
        win = window or Window(0, 0, src.width, src.height)
        data = src.read(window=win)
        profile = {
            **src.profile,
            "driver": "GTiff",
            "height": data.shape[1],
            "width": data.shape[2],
            "transform": transform or src.window_transform(win),
        }
        tags, nodata = (src.tags() if tags else {}), src.nodata
    if edit is not None:
        edit(data, nodata)
    with rasterio.open(dest, "w", **profile) as dst:  # fmt: skip
        dst.write(data)
        if tags:
            dst.update_tags(**tags)
    return dest


def _clouds(rows, cols):
    def edit(data, nodata):
        data[:, rows, cols] = nodata

    return edit


def test_cloudy_dates_fill_each_other_s_gaps(zion_prediction, tmp_path):
    labels = zion_prediction / "labels.tif"
    a = _copy(labels, tmp_path / "a.tif", edit=_clouds(slice(100, 400), slice(100, 600)))
    b = _copy(labels, tmp_path / "b.tif", edit=_clouds(slice(300, 700), slice(400, 900)))
    record = merge_maps([a, b], tmp_path / "m", vector=False)
    with rasterio.open(labels) as src, rasterio.open(tmp_path / "m" / "labels.tif") as out:
        want, got, nodata = src.read(), out.read(), out.nodata
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
        assert json.loads(out.tags()["GEOSEG_TAXONOMY"]) == json.loads(
            src.tags()["GEOSEG_TAXONOMY"]
        )
    both = np.zeros(want.shape[1:], bool)
    both[300:400, 400:600] = True  # clouded on both dates
    assert (got[:, both] == nodata).all()
    assert np.array_equal(got[:, ~both], want[:, ~both])
    scene_nodata = int((want[0] == nodata).sum())
    assert record["unlabelled_pixels"] == scene_nodata + int((want[0][both] != nodata).sum())
    # equal confidence everywhere both are clear: the first map gives those pixels
    only_b = int((want[0, 100:400, 100:600] != nodata).sum()) - int((want[0][both] != nodata).sum())
    assert record["inputs"][1]["pixels_given"] == only_b
    # which map each label came from: 1 = a, 2 = b, 0 = none
    with rasterio.open(tmp_path / "m" / "source.tif") as src:
        origin = src.read(1)
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and src.overviews(1)
    assert np.array_equal(origin == 0, got[0] == nodata)
    assert [int((origin == k).sum()) for k in (1, 2)] == [
        i["pixels_given"] for i in record["inputs"]
    ]
    assert (origin[100:300, 100:600] == 2)[want[0, 100:300, 100:600] != nodata].all()
    # pixels and ground area per class, as predict's run.json has them
    coarse = {c["code"]: c for c in record["area_per_class"]["coarse"]}
    codes, counts = np.unique(got[0][got[0] != nodata], return_counts=True)
    assert {c: v["pixels"] for c, v in coarse.items()} == dict(
        zip(codes.tolist(), counts.tolist(), strict=True)
    )
    assert all(v["area_m2"] == v["pixels"] * 900 for v in coarse.values())  # 30 m UTM
    assert sum(v["pixels"] for v in record["area_per_class"]["fine"]) <= sum(counts)


def test_overlapping_neighbours_join_on_the_union_grid(zion_prediction, tmp_path):
    labels = zion_prediction / "labels.tif"
    with rasterio.open(labels) as src:
        h, w = src.shape
    left = _copy(labels, tmp_path / "l.tif", window=Window(0, 0, 700, 900))
    right = _copy(labels, tmp_path / "r.tif", window=Window(500, 300, w - 500, h - 300))
    top_right = _copy(labels, tmp_path / "tr.tif", window=Window(600, 0, w - 600, 400))
    grid = merged_grid([right, left, top_right])
    assert (grid.height, grid.width) == (h, w)
    assert [(m.row_off, m.col_off) for m in grid.maps] == [(300, 500), (0, 0), (0, 600)]
    res = CliRunner().invoke(
        cli, ["merge", str(right), str(left), str(top_right), "--out", str(tmp_path / "m")]
    )
    assert res.exit_code == 0, res.output
    with rasterio.open(labels) as src, rasterio.open(tmp_path / "m" / "labels.tif") as out:
        want, got = src.read(), out.read()
        nodata = out.nodata
    covered = np.zeros((h, w), bool)
    covered[:900, :700] = covered[300:, 500:] = covered[:400, 600:] = True
    assert np.array_equal(got[:, covered], want[:, covered])
    assert (got[:, ~covered] == nodata).all()
    assert (tmp_path / "m" / "landcover.gpkg").exists()
    assert (tmp_path / "m" / "quicklook.png").exists()


def test_the_more_confident_label_wins(zion_prediction, tmp_path):
    labels = zion_prediction / "labels.tif"

    def sure(data, nodata):
        data[0, :50, :50] = 3  # Barren
        data[2, :50, :50] = 100

    def unsure(data, nodata):
        data[0, :50, :50] = 5  # Shrubland
        data[2, :50, :50] = 1

    a = _copy(labels, tmp_path / "a.tif", edit=unsure)
    b = _copy(labels, tmp_path / "b.tif", edit=sure)
    merge_maps([a, b], tmp_path / "m", vector=False)
    with rasterio.open(tmp_path / "m" / "labels.tif") as out:
        got = out.read(window=Window(0, 0, 50, 50))
    assert (got[0] == 3).all() and (got[2] == 100).all()


def test_maps_that_cannot_be_merged_are_refused(zion_prediction, tmp_path):
    labels = zion_prediction / "labels.tif"
    with rasterio.open(labels) as src:
        t = src.transform
    shifted = _copy(labels, tmp_path / "s.tif", transform=t * Affine.translation(0.5, 0))
    with pytest.raises(RasterFormatError, match=r"0\.50 px.*gdalwarp -tr 30 30 -te"):
        merged_grid([labels, shifted])
    coarser = _copy(labels, tmp_path / "c.tif", transform=t * Affine.scale(2))
    with pytest.raises(RasterFormatError, match="pixel size"):
        merged_grid([labels, coarser])
    plain = _copy(labels, tmp_path / "plain.tif", tags=False)
    with pytest.raises(RasterFormatError, match=r"not a geoseg labels\.tif"):
        merged_grid([labels, plain])
    with pytest.raises(RasterFormatError, match="nothing to merge with"):
        merged_grid([labels])

    def no_crs(src_path, dest):
        with rasterio.open(src_path) as src:
            data, profile, tags = src.read(), {**src.profile}, src.tags()
        profile.pop("crs")
        with rasterio.open(dest, "w", **profile) as dst:
            dst.write(data)
            dst.update_tags(**tags)
        return dest

    bare = no_crs(labels, tmp_path / "bare.tif")
    for align in (False, True):
        with pytest.raises(RasterFormatError, match=r"it has no CRS and .* has one: georeference"):
            merged_grid([labels, bare], align=align)
    out = tmp_path / "m"
    res = CliRunner().invoke(cli, ["merge", str(labels), str(shifted), "--out", str(out)])
    assert res.exit_code == 1 and "Traceback" not in res.output and not out.exists()


@pytest.mark.parametrize("rule", ["confidence", "majority"])
def test_bands_of_rows_give_the_whole_merge(zion_prediction, tmp_path, rule, monkeypatch):
    import geoseg.merge as merge

    labels = zion_prediction / "labels.tif"
    a = _copy(labels, tmp_path / "a.tif", window=Window(0, 0, 700, 900))
    b = _copy(labels, tmp_path / "b.tif", window=Window(500, 301, 628, 1127))

    def other(data, nodata):  # a third opinion on half of the pixels
        data[0, ::2], data[1, ::2], data[2, ::2] = 5, 52, 50

    c = _copy(labels, tmp_path / "c.tif", window=Window(300, 200, 600, 800), edit=other)
    grid = merged_grid([a, b, c])
    whole = next(merge.merge_strips(grid, rows=grid.height, rule=rule))
    monkeypatch.setattr(merge, "VOTE_PIXELS", 1000)  # votes in chunks too
    parts = list(merge.merge_strips(grid, rows=97, rule=rule))
    assert len(parts) == -(-grid.height // 97)
    assert np.array_equal(np.concatenate([p[1] for p in parts], axis=1), whole[1])
    assert np.array_equal(np.concatenate([p[2] for p in parts]), whole[2])


def test_the_first_rule_keeps_one_date_wherever_it_is_clear(zion_prediction, tmp_path):
    labels = zion_prediction / "labels.tif"

    def unsure_and_clouded(data, nodata):
        data[0, :50, :50] = 5  # Shrubland, barely
        data[2, :50, :50] = 1
        data[:, 100:200, 100:200] = nodata

    def sure(data, nodata):
        data[0, :50, :50] = 3
        data[2, :50, :50] = 100

    a = _copy(labels, tmp_path / "a.tif", edit=unsure_and_clouded)
    b = _copy(labels, tmp_path / "b.tif", edit=sure)
    record = merge_maps([a, b], tmp_path / "m", vector=False, rule="first")
    with rasterio.open(tmp_path / "m" / "labels.tif") as out, rasterio.open(labels) as src:
        got, want = out.read(), src.read()
    assert (got[0, :50, :50] == 5).all()  # a is clear there: a's label, however unsure
    assert np.array_equal(got[:, 100:200, 100:200], want[:, 100:200, 100:200])  # b fills
    assert record["rule"] == "first"
    assert record["inputs"][1]["pixels_given"] == int((want[0, 100:200, 100:200] != 255).sum())


def test_merge_mistakes_are_one_line_errors(zion_prediction, tmp_path):
    labels = zion_prediction / "labels.tif"
    with rasterio.open(labels) as src:
        t = src.transform
    with pytest.raises(RasterFormatError, match="listed twice"):
        merged_grid([labels, labels.parent / ".." / labels.parent.name / labels.name])
    with pytest.raises(RasterReadError, match="file not found"):
        merged_grid([labels, tmp_path / "missing.tif"])
    # the same map under another name would vote twice; the same pixels elsewhere are
    # another map, and one pixel changed makes another date
    copy = _copy(labels, tmp_path / "copy.tif")
    for rule in ("majority", "mean"):
        with pytest.raises(RasterFormatError, match=r"copy\.tif: a copy of .*labels\.tif"):
            merge_maps([labels, copy], tmp_path / "c", vector=False, rule=rule)
    kept = merge_maps([labels, copy], tmp_path / "c", vector=False)  # gives nothing: no harm
    assert kept["inputs"][1]["pixels_given"] == 0

    def clouded(data, nodata):
        data[:] = nodata

    # two dates clouded over are two maps with no label, not copies (review finding)
    blank = [_copy(labels, tmp_path / f"blank{i}.tif", edit=clouded) for i in (1, 2)]
    record = merge_maps([labels, *blank], tmp_path / "b", vector=False, rule="majority")
    assert sum("blank1.tif labels no pixel" in n for n in record["warnings"]) == 1
    with rasterio.open(labels) as src:
        t, w = src.transform, src.width
    apart = _copy(labels, tmp_path / "apart.tif", transform=t * Affine.translation(w, 0))
    assert len(merged_grid([labels, apart]).maps) == 2

    def one_pixel(data, nodata):
        data[2, 600, 600] = 1 if data[2, 600, 600] != 1 else 2

    assert len(merged_grid([labels, _copy(labels, tmp_path / "d.tif", edit=one_pixel)]).maps) == 2
    shifted = _copy(labels, tmp_path / "s.tif", transform=t * Affine.translation(0.5, 0))
    with pytest.raises(RasterFormatError) as err:
        merged_grid([labels, shifted])
    # the -te of the fix lies on the first map's pixel edges
    te = [float(v) for v in str(err.value).split("-te ")[1].split()[:4]]
    assert all(abs(((x - t.c) / t.a) % 1) < 1e-6 for x in te[::2])
    assert all(abs(((y - t.f) / t.e) % 1) < 1e-6 for y in te[1::2])
    res = CliRunner().invoke(
        cli, ["merge", str(labels), str(tmp_path / "missing.tif"), "--out", str(tmp_path / "m")]
    )
    assert res.exit_code == 1 and "Traceback" not in res.output
    # found by a blind user test: each of these was a traceback, a silent wrong map or a
    # misleading message
    with pytest.raises(RasterReadError, match=r"a folder: pass the map in it \(.*labels\.tif\)"):
        merged_grid([labels, zion_prediction])
    two = tmp_path / "two.tif"
    with rasterio.open(labels) as src:
        profile, data, tags = {**src.profile, "count": 2}, src.read([1, 2]), src.tags()
    with rasterio.open(two, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(**tags)
    with pytest.raises(RasterFormatError, match=r"2 bands .* a geoseg map has 3: coarse,fine,conf"):
        merged_grid([labels, two])
    reordered = _copy(labels, tmp_path / "order.tif")
    with rasterio.open(reordered, "r+") as ds:
        ds.update_tags(GEOSEG_BANDS="fine,coarse,confidence")
    with pytest.raises(RasterFormatError, match=r"3 bands \(fine,coarse,confidence\)"):
        merged_grid([labels, reordered])
    far = _copy(labels, tmp_path / "far.tif", transform=t * Affine.translation(0, 100_000))
    with pytest.raises(RasterFormatError, match=r"far\.tif: lies far from .*row 100,000, column 0"):
        merged_grid([labels, far])
    res = CliRunner().invoke(
        cli, ["merge", str(labels), str(far), "--out", str(tmp_path / "m"), "--align"]
    )
    assert res.exit_code == 1 and "Traceback" not in res.output and "lies far" in res.output
    south_up = _copy(
        labels, tmp_path / "south.tif", transform=Affine(t.a, 0, t.c, 0, -t.e, t.f - 1428 * 30)
    )
    with pytest.raises(RasterFormatError, match=r"south\.tif: .*the other way .*pass --align "):
        merged_grid([labels, south_up])
    # listed first, the south-up map is still the one named, with the order to change
    with pytest.raises(
        RasterFormatError, match=r"south\.tif: .*list a north-up map first .*gdalwarp -r near"
    ):
        merged_grid([south_up, labels])
    coarser = _copy(labels, tmp_path / "c60.tif", transform=t * Affine.scale(2))
    with pytest.raises(RasterFormatError, match=r"pixels of 60 x 60.*gdalwarp -tr 30 30 -te"):
        merged_grid([labels, coarser])


def test_merge_warns_of_what_its_inputs_should_not_hold(zion_prediction, tmp_path, caplog):
    labels = zion_prediction / "labels.tif"

    def odd(data, nodata):
        data[0, :10, :10], data[1, :10, :10] = 9, 99  # codes NLCD does not have
        data[0, 10:20, :10], data[1, 10:20, :10] = 4, 52  # Forest / Shrub-Scrub

    a, b = _copy(labels, tmp_path / "a.tif"), _copy(labels, tmp_path / "b.tif", edit=odd)
    record = merge_maps([b, a], tmp_path / "m", vector=False, rule="majority")
    notes = record["warnings"]
    assert any("majority rule with two maps is the confidence rule" in n for n in notes)
    assert any("100 pixels hold coarse codes 9 that taxonomy 'nlcd'" in n for n in notes)
    assert any("100 pixels hold fine codes 99" in n for n in notes)
    assert any("200 pixels have a fine class that is not a child" in n for n in notes)
    assert len(notes) == 4 and all(n in caplog.text for n in notes)
    c = _copy(labels, tmp_path / "c.tif", edit=_clouds(slice(0, 50), slice(0, 50)))
    clean = merge_maps([a, c], tmp_path / "n", vector=False)
    assert clean["warnings"] == []


def _vote_by_hand(coarse, fine, conf, valid, fine_valid):
    """majority_vote written as the README says it, one pixel at a time."""
    maps, pixels = coarse.shape
    out = []
    for p in range(pixels):
        have = [i for i in range(maps) if valid[i, p]]
        if not have:
            out.append(-1)
            continue

        def rank(level, among, p=p):
            votes = {}  # class: (maps, their confidence, the first map that gave it)
            for i in among:
                n, s, first = votes.get(level[i, p], (0, 0, i))
                votes[level[i, p]] = (n + 1, s + int(conf[i, p]), first)
            return max(votes, key=lambda k: (votes[k][0], votes[k][1], -votes[k][2]))

        c = rank(coarse, have)
        given_c = [i for i in have if coarse[i, p] == c]
        voters = [i for i in given_c if fine_valid[i, p]] or given_c
        f = rank(fine, voters)
        both = [i for i in voters if fine[i, p] == f]
        out.append(max(both, key=lambda i: (int(conf[i, p]), -i)))
    return np.array(out)


def test_the_majority_vote_is_the_one_described():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from geoseg.merge import majority_vote

    def vote(*maps):  # one pixel: (coarse, fine, confidence) per map, None for nodata
        c, f, k = (np.array([[m[j] if m else 0] for m in maps]) for j in range(3))
        valid = np.array([[m is not None] for m in maps])
        fine_valid = np.array([[m is not None and m[1] is not None] for m in maps])
        f = np.where(fine_valid, f, 255)
        return int(majority_vote(c, f, k, valid, fine_valid)[0])

    # 2 of 3 maps say Forest (one Deciduous, one Evergreen, the Evergreen map the
    # surer); the third, surest of all, says Water
    assert vote((4, 41, 60), (4, 42, 70), (1, 11, 99)) == 1
    # a tie of fine classes in votes and in summed confidence: the first listed map's
    # class, although a map of the other is the surest
    assert vote((4, 42, 50), (4, 42, 50), (4, 41, 70), (4, 41, 30)) == 0
    # maps without a fine class (a coarse-only model's) do not outvote one that has it
    assert vote((4, 42, 72), (4, None, 72), (4, None, 72)) == 0
    assert vote((4, None, 10), (4, None, 80), (5, 52, 99)) == 1
    assert vote(None, None) == -1

    @settings(max_examples=400, deadline=None)
    @given(st.integers(1, 6), st.integers(1, 30), st.data())
    def check(maps, pixels, data):
        def draw(lo, hi):
            n = maps * pixels
            values = data.draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n))
            return np.array(values).reshape(maps, pixels)

        coarse = draw(1, 2)
        fine = coarse * 10 + draw(1, 2)  # children of their coarse class
        conf, valid = draw(0, 2), draw(0, 3) > 0  # few values: many ties
        fine_valid = valid & (draw(0, 4) > 0)
        got = majority_vote(coarse, fine, conf, valid, fine_valid)
        assert np.array_equal(got, _vote_by_hand(coarse, fine, conf, valid, fine_valid))

    check()


def test_the_majority_rule_outvotes_one_date_s_error(zion_prediction, tmp_path):
    labels = zion_prediction / "labels.tif"

    def barren(conf):
        def edit(data, nodata):
            data[0, :60, :60], data[1, :60, :60], data[2, :60, :60] = 3, 31, conf
            data[:, 200:260, 200:260] = nodata  # a cloud in this date

        return edit

    def shrub(data, nodata):  # the odd date out, and the surest
        data[0, :60, :60], data[1, :60, :60], data[2, :60, :60] = 5, 52, 100

    maps = [
        _copy(labels, tmp_path / "a.tif", edit=shrub),
        _copy(labels, tmp_path / "b.tif", edit=barren(40)),
        _copy(labels, tmp_path / "c.tif", edit=barren(45)),
    ]
    res = CliRunner().invoke(
        cli,
        [
            "merge",
            *map(str, maps),
            "--out",
            str(tmp_path / "m"),
            "--rule",
            "majority",
            "--no-vector",
        ],
    )
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "m" / "labels.tif") as out, rasterio.open(labels) as src:
        got, want = out.read(), src.read()
    with rasterio.open(tmp_path / "m" / "source.tif") as s:
        source = s.read(1)
    assert (got[0, :60, :60] == 3).all() and (got[1, :60, :60] == 31).all()
    assert (got[2, :60, :60] == 45).all() and (source[:60, :60] == 3).all()  # c: the surer
    # elsewhere all three agree (b and c clouded at 200:260 leave a alone there)
    assert np.array_equal(got[:, 100:200, 100:200], want[:, 100:200, 100:200])
    assert np.array_equal(got[:, 200:260, 200:260], want[:, 200:260, 200:260])
    assert (source[200:260, 200:260] == 1).all()
    record = json.loads((tmp_path / "m" / "merge.json").read_text())
    assert record["rule"] == "majority"
    # the fine class is a child of the coarse one everywhere (NLCD)
    parents = {11: 1, 12: 1, 21: 2, 22: 2, 23: 2, 24: 2, 31: 3, 41: 4, 42: 4, 43: 4}
    parents |= {52: 5, 71: 6, 81: 7, 82: 7, 90: 8, 95: 8}
    fine, coarse = got[1], got[0]
    labelled = fine != 255
    assert all(
        parents[int(f)] == int(c) for f, c in {*zip(fine[labelled], coarse[labelled], strict=True)}
    )


def _warped(src_path, dest, crs):
    """The map reprojected into ``crs`` at about its pixel size (nearest), tags kept."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    with rasterio.open(src_path) as src:
        t, w, h = calculate_default_transform(src.crs, crs, src.width, src.height, *src.bounds)
        profile = {**src.profile, "driver": "GTiff", "crs": crs, "transform": t}
        profile.update(width=w, height=h)
        with rasterio.open(dest, "w", **profile) as dst:
            for b in (1, 2, 3):
                reproject(
                    rasterio.band(src, b),
                    rasterio.band(dst, b),
                    resampling=Resampling.nearest,
                    src_nodata=src.nodata,
                    dst_nodata=src.nodata,
                )
            dst.update_tags(**src.tags())
    return dest


def test_maps_on_other_grids_are_resampled_with_align(zion_prediction, tmp_path):
    """A neighbour in the next UTM zone, or a map off the pixel edges, joins with --align."""
    labels = zion_prediction / "labels.tif"
    hole = (slice(300, 420), slice(300, 420))
    clouded = _copy(labels, tmp_path / "a.tif", edit=_clouds(*hole))
    zone13 = _warped(labels, tmp_path / "z13.tif", "EPSG:32613")
    with pytest.raises(RasterFormatError, match=r"CRS.*gdalwarp.*--align"):
        merged_grid([clouded, zone13])
    out = tmp_path / "m"
    res = CliRunner().invoke(
        cli, ["merge", str(clouded), str(zone13), "--out", str(out), "--rule", "first",
              "--align", "--no-vector"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    record = json.loads((out / "merge.json").read_text())
    assert [i["resampled"] for i in record["inputs"]] == [False, True]
    a = record["inputs"][0]
    with rasterio.open(out / "labels.tif") as m, rasterio.open(labels) as src:
        assert m.crs == src.crs and m.res == src.res
        assert (m.transform.c - src.transform.c) % 30 == 0  # on the first map's pixel edges
        got = m.read(window=Window(a["col_off"], a["row_off"], src.width, src.height))
        want = src.read()
    outside = np.ones(want.shape[1:], bool)
    outside[hole] = False
    assert np.array_equal(got[:, outside], want[:, outside])  # the first map stands
    filled = got[:, hole[0], hole[1]]
    assert (filled[0] != 255).all()  # the other zone's map fills the cloud
    # resampled twice by nearest neighbour: most labels as before, each pixel's three
    # bands from one pixel (a fine class is a child of its coarse one)
    assert (filled[1] == want[1][hole]).mean() > 0.8
    parents = {f: c for c, f in {*zip(want[0].ravel(), want[1].ravel(), strict=True)}}
    assert all(
        parents[f] == c for c, f in {*zip(filled[0].ravel(), filled[1].ravel(), strict=True)}
    )

    with rasterio.open(labels) as src:
        t = src.transform
    shifted = _copy(labels, tmp_path / "s.tif", transform=t * Affine.translation(0.5, 0.5))
    grid = merged_grid([labels, shifted], align=True)
    assert grid.maps[1].resampled and not grid.maps[0].resampled
    # half a pixel more on two sides, whose pixel centres the shifted map does not reach:
    # no row or column is added that no map would label
    assert (grid.height, grid.width) == (1428, 1128)
    for third in (1 / 3, -1 / 3):
        moved = _copy(labels, tmp_path / "t.tif", transform=t * Affine.translation(third, third))
        assert (merged_grid([labels, moved], align=True).width, third) == (1128, third)
        record = merge_maps([labels, moved], tmp_path / f"h{third:.2f}", vector=False, align=True)
        assert record["unlabelled_pixels"] == 0


def _with_probabilities(src_dir, dest_dir, edit):
    """A copy of a prediction's labels.tif and probabilities.tif, both edited by ``edit``."""
    dest_dir.mkdir()
    with (
        rasterio.open(src_dir / "labels.tif") as lab,
        rasterio.open(src_dir / "probabilities.tif") as prob,
    ):
        labels, probs = lab.read(), prob.read()
        edit(labels, probs)
        for src, data in ((lab, labels), (prob, probs)):
            profile = {**src.profile, "driver": "GTiff"}
            with rasterio.open(dest_dir / src.name.split("/")[-1], "w", **profile) as dst:
                dst.write(data)
                dst.update_tags(**src.tags())
    return dest_dir / "labels.tif"


def test_the_mean_rule_takes_the_most_probable_leaf_of_the_mean_probabilities(
    tiny_scene, tiny_bundle, tmp_path
):
    from geoseg.bundle import read_meta
    from geoseg.infer import InferOptions
    from geoseg.workflow import run_predict

    tax = read_meta(tiny_bundle).taxonomy
    pred = tmp_path / "pred"
    opts = InferOptions(probabilities=True)
    run_predict(tiny_scene, tiny_bundle, pred, vector=False, options=opts)
    rng = np.random.default_rng(5)
    nc, nf = tax.n_coarse, tax.n_fine

    def noisy(labels, probs):
        valid = labels[0] != tax.nodata
        probs[:, valid] = rng.integers(0, 40, (nc + nf, int(valid.sum())))
        cloud = rng.random(labels[0].shape) < 0.2  # each date its own clouds
        labels[:, cloud] = tax.nodata
        probs[:, cloud] = 255

    maps = [_with_probabilities(pred, tmp_path / f"d{i}", noisy) for i in range(3)]
    record = merge_maps(maps, tmp_path / "m", vector=False, rule="mean")
    assert record["rule"] == "mean"
    # by hand, one pixel at a time
    labels = [rasterio.open(m).read() for m in maps]
    probs = [rasterio.open(m.parent / "probabilities.tif").read().astype(float) for m in maps]
    with (
        rasterio.open(tmp_path / "m" / "labels.tif") as out,
        rasterio.open(tmp_path / "m" / "source.tif") as src,
    ):
        got, source = out.read(), src.read(1)
    assert "probabilities.tif" in record["outputs"]
    with rasterio.open(tmp_path / "m" / "probabilities.tif") as mp:
        merged = mp.read().astype(float)
        assert mp.tags()["GEOSEG_BANDS"] == "probabilities" and mp.count == nc + nf
    leaves = [(nc + j, tax.fine[j].parent, f.code) for j, f in enumerate(tax.fine)]
    leaves += [(k, tax.coarse[k].code, tax.nodata) for k in tax.childless_coarse_index]
    h, w = got.shape[1:]
    for r in range(0, h, 3):
        for c in range(0, w, 3):
            have = [i for i in range(3) if labels[i][0, r, c] != tax.nodata]
            if not have:
                assert got[0, r, c] == tax.nodata and source[r, c] == 0
                assert (merged[:, r, c] == 255).all()
                continue
            every = [sum(probs[i][b, r, c] for i in have) / len(have) for b in range(nc + nf)]
            assert np.array_equal(merged[:, r, c], np.round(every)), (r, c)
            mean = [every[band] for band, _, _ in leaves]
            best = int(np.argmax(mean))
            band, coarse, fine = leaves[best]
            assert (got[0, r, c], got[1, r, c]) == (coarse, fine), (r, c)
            assert got[2, r, c] == max(1, round(mean[best]))
            surest = max(have, key=lambda i: (probs[i][band, r, c], -i))
            assert source[r, c] == surest + 1
    # probabilities of another place (the same size): another prediction's
    with rasterio.open(tmp_path / "d1" / "probabilities.tif", "r+") as p:
        p.transform = p.transform * Affine.translation(7, 0)
    with pytest.raises(RasterFormatError, match="belongs to another prediction"):
        merge_maps(maps, tmp_path / "m3", vector=False, rule="mean")
    with rasterio.open(tmp_path / "d1" / "probabilities.tif", "r+") as p:
        p.transform = p.transform * Affine.translation(-7, 0)
    # a map without its probabilities: a one-line error that names the fix
    (tmp_path / "d2" / "probabilities.tif").unlink()
    with pytest.raises(RasterFormatError, match=r"d2/labels\.tif: --rule mean .*--probabilities"):
        merge_maps(maps, tmp_path / "m2", vector=False, rule="mean")


def _retagged(src_path, dest, edit):
    """A copy of a labels.tif whose taxonomy tag is edited (``edit(dict) -> dict``)."""
    _copy(src_path, dest)
    with rasterio.open(dest, "r+") as dst:
        tax = json.loads(dst.tags()["GEOSEG_TAXONOMY"])
        dst.update_tags(GEOSEG_TAXONOMY=json.dumps(edit(tax)))
    return dest


def test_maps_whose_class_names_differ_are_refused_or_recorded(zion_prediction, tmp_path):
    labels = zion_prediction / "labels.tif"

    def swap(tax):  # Deciduous and Evergreen Forest named the other way round
        names = {c["code"]: c["name"] for c in tax["fine"]}
        for c in tax["fine"]:
            if c["code"] in (41, 42):
                c["name"] = names[83 - c["code"]]
        return tax

    swapped = _retagged(labels, tmp_path / "swap.tif", swap)
    with pytest.raises(RasterFormatError, match=r"'Evergreen Forest' is 41 there and 42 in"):
        merged_grid([labels, swapped])

    def translate(tax):
        for c in tax["coarse"]:
            c["name"] = {"Water": "Eau"}.get(c["name"], c["name"])
        return {**tax, "name": "nlcd-fr"}

    french = _retagged(labels, tmp_path / "fr.tif", translate)
    record = merge_maps([labels, french], tmp_path / "m", vector=False)
    assert len(record["warnings"]) == 1
    assert "taxonomy 'nlcd-fr' has the codes of 'nlcd'" in record["warnings"][0]
    assert "class 1 'Eau' is 'Water'" in record["warnings"][0]
    saved = json.loads((tmp_path / "m" / "merge.json").read_text())
    assert saved["warnings"] == record["warnings"]


def test_a_merge_that_is_mostly_empty_is_recorded(zion_prediction, tmp_path):
    labels = zion_prediction / "labels.tif"
    with rasterio.open(labels) as src:
        t = src.transform
    corner = Window(0, 0, 300, 300)
    a = _copy(labels, tmp_path / "a.tif", window=corner)
    # the same corner placed 5 of its widths east and south (a wrong CRS, coordinates)
    far = _copy(
        labels, tmp_path / "b.tif", window=corner, transform=t * Affine.translation(900, 900)
    )
    record = merge_maps([a, far], tmp_path / "m", vector=False)
    assert any(
        "of the merged map (1,200 x 1,200 pixels, the union of the maps' extents) is labelled "
        "by no map" in n
        for n in record["warnings"]
    )
    near = _copy(labels, tmp_path / "c.tif", window=Window(300, 0, 300, 300))  # adjacent
    assert merge_maps([a, near], tmp_path / "n", vector=False)["warnings"] == []


def test_a_merge_is_not_merged_again_with_its_own_inputs(tiny_scene, tiny_bundle, tmp_path):
    from geoseg.workflow import run_predict
    from geoseg.write import MAP_ID, MERGED_FROM

    from .conftest import write_raster

    with rasterio.open(tiny_scene) as src:
        image = src.read()
    runs = []
    for i, d in enumerate(("a", "b", "c")):  # three dates: other pixels, other labels
        date = np.where(image == 65535, image, image + np.uint16(400 * i))
        scene = write_raster(
            tmp_path / f"{d}.tif", date, nodata=65535, names=("B2", "B3", "B4", "B5")
        )
        runs.append(run_predict(scene, tiny_bundle, tmp_path / d, vector=False, options=_probs()))
    maps = [tmp_path / d / "labels.tif" for d in ("a", "b", "c")]
    ids = [r["map_id"] for r in runs]
    assert len(set(ids)) == 3  # a new identifier for every map written
    for m, i in zip(maps, ids, strict=True):
        for f in (m, m.parent / "probabilities.tif"):
            with rasterio.open(f) as src:
                assert src.tags()[MAP_ID] == i
    merged = merge_maps(maps, tmp_path / "m", vector=False, rule="mean")
    with rasterio.open(tmp_path / "m" / "labels.tif") as src:
        assert src.tags()[MAP_ID] == merged["map_id"]
        assert src.tags()[MERGED_FROM].split(",") == ids
    again = [tmp_path / "m" / "labels.tif", maps[0]]
    for rule in ("majority", "mean"):
        with pytest.raises(RasterFormatError, match=r"a merge of .*a/labels.tif, which is listed"):
            merge_maps(again, tmp_path / f"x-{rule}", vector=False, rule=rule)
    merge_maps(again, tmp_path / "first", vector=False, rule="first")  # nothing counts twice
    # a probabilities.tif of another run beside a labels.tif is refused
    (tmp_path / "c" / "probabilities.tif").unlink()
    (tmp_path / "b" / "probabilities.tif").rename(tmp_path / "c" / "probabilities.tif")
    with pytest.raises(RasterFormatError, match=r"written by another run than .*c/labels.tif"):
        merge_maps(maps[::2], tmp_path / "y", vector=False, rule="mean")


def _probs():
    from geoseg.infer import InferOptions

    return InferOptions(probabilities=True)


def test_the_merged_map_takes_the_grid_it_is_given(zion_prediction, tmp_path):
    labels = zion_prediction / "labels.tif"
    with rasterio.open(labels) as src:
        t, full = src.transform, src.read()

    coarse60 = tmp_path / "m60.tif"
    with rasterio.open(labels) as src:
        profile = {**src.profile, "height": full.shape[1] // 2, "width": full.shape[2] // 2,
                   "transform": t * Affine.scale(2)}  # fmt: skip
        tags = src.tags()
    with rasterio.open(coarse60, "w", **profile) as dst:
        dst.write(full[:, ::2, ::2])
        dst.update_tags(**tags)
    # the 60 m date first (its labels win under --rule first), on the 30 m map's grid
    with pytest.raises(RasterFormatError, match=r"pass --align"):
        merge_maps([coarse60, labels], tmp_path / "x", vector=False, rule="first", grid_of=labels)
    record = merge_maps(
        [coarse60, labels], tmp_path / "m", vector=False, rule="first", align=True,
        grid_of=labels,
    )  # fmt: skip
    assert record["grid_of"] == str(labels.resolve())
    with rasterio.open(tmp_path / "m" / "labels.tif") as out:
        assert out.transform == t and out.shape == full.shape[1:]
        merged = out.read()
    want = full[:, ::2, ::2].repeat(2, axis=1).repeat(2, axis=2)
    np.testing.assert_array_equal(merged, want)
    # any north-up raster may give the grid; a south-up one may not
    from .conftest import shared_file

    truth = shared_file("zion/nlcd2011_level1.tif")
    assert merged_grid([labels, coarse60], align=True, grid=truth).transform == t
    south = tmp_path / "south.tif"
    up = Affine(30, 0, t.c, 0, 30, t.f)
    with rasterio.open(south, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8",
                       crs="EPSG:32612", transform=up) as dst:  # fmt: skip
        dst.write(np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(RasterFormatError, match="south-up"):
        merged_grid([labels, coarse60], align=True, grid=south)


def test_a_fine_class_named_as_its_coarse_class_is_no_conflict():
    from geoseg.merge import _renamed_classes
    from geoseg.taxonomy import Taxonomy

    tax = Taxonomy.from_dict(
        {
            "name": "t",
            "coarse": [{"code": 5, "name": "Water"}, {"code": 6, "name": "Land"}],
            "fine": [
                {"code": 51, "name": "Water", "parent": 5},
                {"code": 6, "name": "Bare", "parent": 6},
            ],
        }
    )
    assert _renamed_classes("b.tif", tax, {"tax": tax, "tax_path": "a.tif"}) is None


def test_maps_of_two_models_are_said_to_be_compared_as_alike(tiny_scene, tiny_bundle, tmp_path):
    import shutil

    from geoseg.workflow import run_predict
    from geoseg.write import BUNDLE_TAG

    other = tmp_path / "other-bundle"
    shutil.copytree(tiny_bundle, other)
    meta = json.loads((other / "bundle.json").read_text())
    (other / "bundle.json").write_text(json.dumps({**meta, "name": "other"}))
    for out, bundle in (("a", tiny_bundle), ("b", other)):
        run_predict(tiny_scene, bundle, tmp_path / out, vector=False)
    with rasterio.open(tmp_path / "b" / "labels.tif") as src:
        assert src.tags()[BUNDLE_TAG].startswith("other ")
    maps = [tmp_path / "a" / "labels.tif", tmp_path / "b" / "labels.tif"]
    record = merge_maps(maps, tmp_path / "m", vector=False)
    assert any("the maps come from 2 models" in n for n in record["warnings"])
    assert merge_maps(maps, tmp_path / "f", vector=False, rule="first")["warnings"] == []
    shutil.copytree(tmp_path / "a", tmp_path / "a2")  # another map of the same model
    same = merge_maps([maps[0], tmp_path / "a2" / "labels.tif"], tmp_path / "s", vector=False)
    assert not any("models" in n for n in same["warnings"])


def _tenfold(src_path, dest, *, shift=0.0, edit=None):
    """The map at a third of its pixel size (each pixel 3 x 3), ``shift`` of a new pixel off."""
    with rasterio.open(src_path) as src:
        data = src.read().repeat(3, axis=1).repeat(3, axis=2)
        t = src.transform * Affine.scale(1 / 3) * Affine.translation(shift, shift)
        profile = {**src.profile, "driver": "GTiff", "transform": t}
        profile.update(height=data.shape[1], width=data.shape[2])
        tags = src.tags()
    if edit is not None:
        edit(data)
    with rasterio.open(dest, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(**tags)
    return dest


def test_a_finer_map_gives_the_most_common_leaf_under_each_pixel(zion_prediction, tmp_path):
    """--align of a 10 m map onto a 30 m one: each pixel the leaf most of its 9 pixels have.

    Nearest neighbour keeps the pixel under the centre (one in nine); the vote keeps
    each pixel's majority, the coarse class its parent, and as confidence the winners'
    summed over the nine (a pixel split between classes is less sure).
    """
    labels = zion_prediction / "labels.tif"
    hole = (slice(300, 420), slice(300, 420))
    clouded = _copy(labels, tmp_path / "a.tif", edit=_clouds(*hole))
    with rasterio.open(labels) as src:
        want = src.read()
    r, c = 350, 350  # a pixel in the hole, whose 10 m copy is mostly another class
    other = next((int(a), int(b)) for a, b in zip(want[0].ravel(), want[1].ravel(), strict=True)
                 if a != 255 and a != want[0, r, c])  # fmt: skip

    def edit(data):
        block = (slice(3 * r, 3 * r + 3), slice(3 * c, 3 * c + 3))
        data[:, block[0], block[1]] = want[:, r, c, None, None]
        data[2, block[0], block[1]] = 60
        corner = [(0, 0), (0, 2), (2, 0), (2, 2), (0, 1)]  # 5 of 9, not the centre
        for i, j in corner:
            data[:, 3 * r + i, 3 * c + j] = (*other, 90)
        # partly clouded: 4 of 9 nodata (a label at 5 x 90 / 9 = 50 %), 5 of 9 (none)
        for (pr, pc), clouded in (((360, 360), 4), ((370, 370), 5)):
            data[:, 3 * pr : 3 * pr + 3, 3 * pc : 3 * pc + 3] = want[:, pr, pc, None, None]
            data[2, 3 * pr : 3 * pr + 3, 3 * pc : 3 * pc + 3] = 90
            cells = data[:, 3 * pr : 3 * pr + 3, 3 * pc : 3 * pc + 3].reshape(3, 9)
            cells[:, :clouded] = 255
            data[:, 3 * pr : 3 * pr + 3, 3 * pc : 3 * pc + 3] = cells.reshape(3, 3, 3)

    records = {}
    for name, shift in (("nested", 0.0), ("shifted", 0.3)):
        ten = _tenfold(labels, tmp_path / f"{name}.tif", shift=shift, edit=edit)
        for how in ("auto", "nearest"):
            out = tmp_path / f"m-{name}-{how}"
            records[name, how] = merge_maps([clouded, ten], out, vector=False, rule="first",
                                            align=True, resampling=how)  # fmt: skip
            with rasterio.open(out / "labels.tif") as m:
                assert m.transform == src.transform and m.shape == src.shape
                got = m.read()[:, hole[0], hole[1]]
            h = (r - hole[0].start, c - hole[1].start)
            expected = want[:, hole[0], hole[1]].copy()
            if how == "auto":  # the vote: the 5 of 9, at 5 x 90 / 9 = 50 % confidence
                expected[:, h[0], h[1]] = (*other, 50)
                expected[:, 60, 60] = (*want[:2, 360, 360], 50)
                expected[:, 70, 70] = 255
            else:  # the centre pixel, at its own confidence
                expected[:, h[0], h[1]] = (*want[:2, r, c], 60)
                expected[:, 60, 60] = (*want[:2, 360, 360], 90)
                expected[:, 70, 70] = 255  # the centre is clouded
            np.testing.assert_array_equal(got, expected)
            assert np.array_equal(got[:, 0, 0], want[:, hole[0].start, hole[1].start])
            resampling = records[name, how]["inputs"][1]["resampling"]
            assert resampling == ("mode" if how == "auto" else "nearest")
    # the command line, --resampling named
    out = tmp_path / "cli"
    res = CliRunner().invoke(
        cli, ["merge", str(clouded), str(tmp_path / "shifted.tif"), "--out", str(out),
              "--rule", "first", "--align", "--resampling", "mode", "--no-vector"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads((out / "merge.json").read_text())["inputs"][1]["resampling"] == "mode"
    with rasterio.open(out / "labels.tif") as m:
        assert m.read(2, window=Window(c, r, 1, 1)).item() == other[1]


def test_the_mean_rule_averages_a_finer_map_s_probabilities(tiny_scene, tiny_bundle, tmp_path):
    """A 10 m map's class probabilities under each 30 m pixel are averaged, then decoded."""
    from geoseg.infer import InferOptions
    from geoseg.workflow import run_predict

    pred = tmp_path / "pred"
    opts = InferOptions(probabilities=True)
    run_predict(tiny_scene, tiny_bundle, pred, vector=False, options=opts)
    hole = (slice(40, 52), slice(40, 52))  # clear of the scene's nodata corner
    coarse = _with_probabilities(pred, tmp_path / "c", lambda lab, prob: None)
    for name in ("labels.tif", "probabilities.tif"):  # clouded: nodata in both
        with rasterio.open(coarse.parent / name, "r+") as dst:
            data = dst.read()
            data[:, hole[0], hole[1]] = dst.nodata if name == "labels.tif" else 255
            dst.write(data)
    finer = tmp_path / "f"
    finer.mkdir()
    rng = np.random.default_rng(0)
    for name in ("labels.tif", "probabilities.tif"):
        _tenfold(pred / name, finer / name)
    with rasterio.open(finer / "probabilities.tif", "r+") as dst:  # each 10 m pixel its own
        data = dst.read()
        data[:, 120:156, 120:156] = rng.integers(0, 101, (data.shape[0], 36, 36))
        dst.write(data)
    record = merge_maps([coarse, finer / "labels.tif"], tmp_path / "m", vector=False, rule="mean",
                        align=True)  # fmt: skip
    assert record["inputs"][1]["resampling"] == "mode"
    with rasterio.open(tmp_path / "m" / "probabilities.tif") as mp:
        merged = mp.read(window=Window(40, 40, 12, 12)).astype(float)
    blocks = data[:, 120:156, 120:156].reshape(data.shape[0], 12, 3, 12, 3).mean(axis=(2, 4))
    assert np.abs(merged - blocks).max() <= 1  # GDAL's average, rounded to whole percent
