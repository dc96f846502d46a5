from pathlib import Path

import numpy as np
import pytest
import yaml

from geoseg.datasets import NLCD_L2_TO_L1
from geoseg.errors import ConfigError
from geoseg.taxonomy import Taxonomy, load_taxonomy

from .conftest import NLCD_YAML, ROOT


def _tax(**over):
    base = {
        "name": "t",
        "nodata": 255,
        "coarse": [{"code": 1, "name": "A"}, {"code": 2, "name": "B"}],
        "fine": [{"code": 11, "name": "A1", "parent": 1}, {"code": 12, "name": "A2", "parent": 1}],
    }
    base.update(over)
    return base


def test_nlcd_preset_has_both_levels_and_parents():
    tax = load_taxonomy(NLCD_YAML)
    assert [c.code for c in tax.coarse] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [c.name for c in tax.coarse][:4] == ["Water", "Developed", "Barren", "Forest"]
    assert tax.n_fine == 16
    for f in tax.fine:
        assert f.parent == NLCD_L2_TO_L1[f.code]
    assert tax.dtype == "uint8"
    assert tax.childless_coarse_index.size == 0


def test_every_preset_loads():
    for path in (ROOT / "configs" / "taxonomy").glob("*.yaml"):
        load_taxonomy(path)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"coarse": [{"code": 1, "name": "A"}, {"code": 1, "name": "B"}]}, "more than once"),
        (
            {
                "fine": [
                    {"code": 11, "name": "x", "parent": 1},
                    {"code": 11, "name": "y", "parent": 1},
                ]
            },
            "more than once",
        ),
        ({"nodata": 2}, "equals the nodata value"),
        ({"fine": [{"code": 11, "name": "x"}]}, "has no 'parent'"),
        ({"fine": [{"code": 11, "name": "x", "parent": 9}]}, "not a coarse code"),
        ({"coarse": [{"code": 1, "name": "A", "color": "red"}]}, "colour"),
        ({"extra": 1}, "Extra inputs"),
    ],
)
def test_invalid_taxonomies_are_rejected(over, message):
    with pytest.raises(ConfigError, match=message):
        Taxonomy.from_dict(_tax(**over))


def test_classes_of_a_level_with_one_name_are_reported_in_a_taxonomy_file(tmp_path, caplog):
    """Allowed ("Other" under two parents), with a warning when a YAML is read: legends
    and reports tell them apart by code only."""
    import yaml

    dup = _tax(
        fine=[
            {"code": 11, "name": "Other", "parent": 1},
            {"code": 12, "name": "Other", "parent": 1},
        ]
    )
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(dup))
    assert [c.name for c in load_taxonomy(path).fine] == ["Other", "Other"]
    assert "t.yaml: fine classes 11, 12 are both named 'Other'" in caplog.text
    load_taxonomy(path)  # read again (geoseg evaluate does): said once
    assert caplog.text.count("both named 'Other'") == 1
    # a fine class with a coarse class's code: allowed, but said
    both = _tax(fine=[{"code": 1, "name": "Bare soil", "parent": 1}])
    path = tmp_path / "both.yaml"
    path.write_text(yaml.safe_dump(both))
    coarse_one = load_taxonomy(path).coarse[0].name
    assert (
        f"both.yaml: fine class 1 (Bare soil) has the code of coarse class 1 ({coarse_one}): "
        "a single band of codes"
    ) in caplog.text
    # the code of a coarse class without fine classes: a fine raster can never mean it
    # (a blind test's Agri became Pond in training, told to give a --level train lacks)
    pond = _tax(fine=[{"code": 2, "name": "Pond", "parent": 1}])
    path = tmp_path / "pond.yaml"
    path.write_text(yaml.safe_dump(pond))
    tax = load_taxonomy(path)
    assert 2 in tax.coarse_codes[tax.childless_coarse_index]
    agri = tax.coarse_name(2)
    assert (
        f"pond.yaml: fine class 2 (Pond) has the code of coarse class 2 ({agri}), which has "
        f"no fine classes: a fine label raster or a leaf map (a single band of codes) reads "
        f"2 as Pond, so {agri} can be labelled only in a coarse raster"
    ) in caplog.text


def test_a_coarse_and_a_fine_class_may_share_a_name():
    tax = Taxonomy.from_dict(_tax(fine=[{"code": 11, "name": "A", "parent": 1}]))
    assert tax.coarse_name(1) == tax.fine_name(11) == "A"


def test_a_misspelt_key_is_named_rather_than_the_key_it_hides():
    tax = _tax(fine=[{"code": 11, "nme": "x", "parent": 1}])
    with pytest.raises(ConfigError) as err:
        Taxonomy.from_dict(tax, source="t.yaml")
    assert str(err.value).startswith("t.yaml: invalid taxonomy at fine.0.nme: unknown key")
    with pytest.raises(ConfigError) as err:
        Taxonomy.from_dict(_tax(nodata=1), source="t.yaml")
    assert "Value error" not in str(err.value)


def test_load_reports_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_tax(nodata=1)))
    with pytest.raises(ConfigError, match=str(bad)):
        load_taxonomy(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_taxonomy(tmp_path / "missing.yaml")


def test_luts_and_leaves():
    tax = Taxonomy.from_dict(_tax())
    lut = tax.code_to_index_lut("fine", 256)
    assert lut[11] == 0 and lut[12] == 1 and lut[13] == -1
    assert tax.fine_to_coarse_code_lut(256)[12] == 1
    assert [c.code for c in tax.leaves] == [11, 12, 2]
    assert np.array_equal(tax.childless_coarse_index, [1])
    assert Taxonomy.from_dict(tax.to_dict()) == tax


@pytest.mark.parametrize(
    ("text", "listed"),
    [
        ("name: t\nfine:\n  - {code: 1, name: A}\n", "no 'coarse' list"),
        ("name: t\ncoarse: []\n", "an empty 'coarse' list"),
    ],
)
def test_a_taxonomy_without_coarse_classes_says_where_classes_go(tmp_path, text, listed):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"t\.yaml: {listed}: .*a one-level taxonomy lists"):
        load_taxonomy(path)
    one_level = tmp_path / "one.yaml"
    one_level.write_text("name: t\ncoarse:\n  - {code: 1, name: A}\n  - {code: 2, name: B}\n")
    assert load_taxonomy(one_level).n_fine == 0


def test_a_parent_may_be_given_by_its_coarse_class_s_name(tmp_path):
    def tax(parent):
        path = tmp_path / "t.yaml"
        path.write_text(
            "name: t\ncoarse:\n  - {code: 1, name: Forest}\n  - {code: 2, name: Water}\n"
            f"fine:\n  - {{code: 11, name: Deciduous, parent: {parent}}}\n"
        )
        return load_taxonomy(path)

    assert (
        tax("Forest").fine[0].parent == tax("forest").fine[0].parent == tax(1).fine[0].parent == 1
    )
    with pytest.raises(
        ConfigError, match=r"parent 'Forst', which is no coarse class's code or name"
    ):
        tax("Forst")
