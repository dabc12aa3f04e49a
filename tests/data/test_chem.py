"""The SMILES featuriser: pinned fingerprint values on known molecules, bits against counts,
descriptors always finite, bad SMILES reported by row and left out, RDKit's log kept quiet."""

from __future__ import annotations

import doctest
import importlib
from typing import Any

import numpy as np
import pytest

from taskmask import TaskmaskError

pytest.importorskip("rdkit", reason="the chem extra (RDKit) is not installed")

from taskmask.data import chem
from taskmask.data.chem import descriptor_names, feature_names, featurize

SAMPLE = [
    "c1ccccc1",
    "CCO",
    "CC(=O)Oc1ccccc1C(=O)O",  # aspirin
    "CN1C=NC2=C1C(=O)N(C(=O)N2C)C",  # caffeine
    "C[C@H](N)C(=O)O",
    "[Na+].[Cl-]",
    "ClC(Cl)(Cl)Cl",
]

# (smiles, radius, bits set, sum of counts): benzene has one atom environment per radius, six
# times over; ethanol's three atoms have distinct environments at radius 0 and 1 (radius 2
# repeats radius 1's whole-molecule environment).
PINNED = [
    ("c1ccccc1", 0, 1, 6),
    ("c1ccccc1", 2, 3, 18),
    ("CCO", 0, 3, 3),
    ("CCO", 1, 6, 6),
    ("CCO", 2, 6, 6),
]


@pytest.mark.parametrize(("smiles", "radius", "n_set", "n_counted"), PINNED)
def test_pinned_bit_and_count_totals(smiles: str, radius: int, n_set: int, n_counted: int) -> None:
    bits, _, _ = featurize([smiles], kind="morgan", radius=radius)
    counts, _, _ = featurize([smiles], kind="morgan_count", radius=radius)
    assert bits.dtype == counts.dtype == np.float32
    assert bits.shape == counts.shape == (1, 2048)
    assert bits.sum() == n_set
    assert counts.sum() == n_counted


@pytest.mark.parametrize("radius", [0, 1, 2, 3])
@pytest.mark.parametrize("n_bits", [64, 1024, 2048])
def test_bits_are_the_support_of_counts(radius: int, n_bits: int) -> None:
    bits, kept, failures = featurize(SAMPLE, kind="morgan", radius=radius, n_bits=n_bits)
    counts, _, _ = featurize(SAMPLE, kind="morgan_count", radius=radius, n_bits=n_bits)
    assert bits.shape == (len(SAMPLE), n_bits) and not failures
    assert kept.tolist() == list(range(len(SAMPLE)))
    assert set(np.unique(bits)) <= {0.0, 1.0}
    assert np.all(counts >= bits)
    np.testing.assert_array_equal(bits, (counts > 0).astype(np.float32))


def test_a_larger_radius_only_adds_bits() -> None:
    small, _, _ = featurize(SAMPLE, radius=1)
    large, _, _ = featurize(SAMPLE, radius=2)
    assert np.all(large >= small)


def test_bad_smiles_are_reported_by_row_and_left_out(capfd: pytest.CaptureFixture[str]) -> None:
    smiles: list[Any] = [
        "CCO",
        "C1CC",  # unclosed ring
        "CC(=O)O[AlH3](O)O",  # Tox21's aluminium compounds: valence 6 on Al
        "",
        None,
        float("nan"),
        "c1ccccc1",
    ]
    X, kept, failures = featurize(smiles, n_bits=256)
    assert kept.tolist() == [0, 6]
    assert [f.row for f in failures] == [1, 2, 3, 4, 5]
    assert len(kept) + len(failures) == len(smiles)
    alone, _, _ = featurize(["CCO", "c1ccccc1"], n_bits=256)
    np.testing.assert_array_equal(X, alone)
    reasons = [f.reason for f in failures]
    assert reasons[0] == "SMILES syntax error"
    assert reasons[1].startswith("sanitisation failed") and "valence" in reasons[1]
    assert reasons[2:] == ["empty or not a string"] * 3
    assert failures[1].smiles == "CC(=O)O[AlH3](O)O"
    report = chem.failure_report(failures, limit=2)
    assert report.splitlines()[0].startswith("5 SMILES")
    assert "row 1" in report and "and 3 more" in report
    assert capfd.readouterr().err == ""  # RDKit's parse errors were silenced


def test_all_rows_bad_gives_an_empty_matrix() -> None:
    X, kept, failures = featurize(["xyz", "C1CC"], n_bits=32)
    assert X.shape == (0, 32) and kept.shape == (0,) and len(failures) == 2


def test_descriptors_are_finite_named_and_right_on_ethanol() -> None:
    names = descriptor_names()
    assert "Ipc" not in names and "AvgIpc" not in names and "MolWt" in names
    X, _, _ = featurize(["CCO", "[Na]I", "[Fe]"], kind="descriptors")
    assert X.shape == (3, len(names)) and np.isfinite(X).all()
    row = dict(zip(names, X[0], strict=True))
    assert row["MolWt"] == pytest.approx(46.069, abs=1e-3)
    assert row["NumHDonors"] == 1 and row["RingCount"] == 0
    # RDKit gives NaN Gasteiger charges for sodium iodide and NaN BCUTs for a lone iron atom
    assert dict(zip(names, X[1], strict=True))["MaxPartialCharge"] == 0.0
    assert dict(zip(names, X[2], strict=True))["BCUT2D_MWHI"] == 0.0


def test_chosen_descriptors_and_concatenated_kinds() -> None:
    X, _, _ = featurize(["CCO"], kind=["morgan", "descriptors"], n_bits=16, descriptors=["Ipc"])
    assert X.shape == (1, 17)
    assert feature_names(["morgan", "descriptors"], n_bits=16, descriptors=["Ipc"]) == [
        *(f"morgan_{i}" for i in range(16)),
        "Ipc",
    ]
    assert len(feature_names(["morgan_count", "descriptors"], n_bits=8)) == 8 + len(
        descriptor_names()
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "maccs"}, "kind must be"),
        ({"kind": []}, "kind must be"),
        ({"radius": -1}, "radius"),
        ({"n_bits": 0}, "n_bits"),
        ({"kind": "descriptors", "descriptors": ["NoSuchThing"]}, "NoSuchThing"),
    ],
)
def test_bad_settings_are_named(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(TaskmaskError, match=match):
        featurize(["CCO"], **kwargs)


def test_one_string_is_not_a_list_of_smiles() -> None:
    with pytest.raises(TaskmaskError, match="not one string"):
        featurize("CCO")  # type: ignore[arg-type]


def test_missing_rdkit_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def no_rdkit(name: str, *args: Any) -> Any:
        if name.startswith("rdkit"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_rdkit)
    with pytest.raises(TaskmaskError, match=r"taskmask\[chem\]"):
        featurize(["CCO"])


def test_doctests() -> None:
    assert doctest.testmod(chem).failed == 0


# --- SMILES features from a run config (YAML) and the CLI -------------------------------------


def _smiles_table(n_rows: int = 60) -> Any:
    import pandas as pd

    pool = [s for s in SAMPLE if s != "[Na+].[Cl-]"] + ["CCN", "CCCC", "c1ccncc1", "OCCO"]
    rng = np.random.default_rng(0)
    smiles = [pool[i % len(pool)] for i in range(n_rows)]
    smiles[3] = "not a molecule"
    smiles[7] = "C1CC"  # unclosed ring
    ring = np.array(["c1" in s or "C1" in s for s in smiles], dtype=float)
    ring[rng.random(n_rows) < 0.2] = np.nan
    return pd.DataFrame({"smiles": smiles, "ring": ring, "mass": rng.random(n_rows)})


def test_cli_trains_evaluates_and_predicts_from_smiles(tmp_path: Any) -> None:
    import contextlib
    import io

    import pandas as pd
    import yaml

    from taskmask.app.cli import main
    from taskmask.persistence import load_model

    _smiles_table().to_csv(tmp_path / "train.csv", index=False)
    config = {
        "data": {
            "train": "train.csv",
            "features": ["mass"],
            "smiles": {"column": "smiles", "kind": ["morgan", "morgan_count"], "n_bits": 64},
            "validation_split": 0.25,
        },
        "tasks": [{"name": "ring", "kind": "binary"}],
        "model": {"trunk": {"hidden": [8]}},
        "training": {"epochs": 2, "batch_size": 16, "seed": 0},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(
            [
                "train",
                "--config",
                str(tmp_path / "run.yaml"),
                "--out",
                str(tmp_path / "run"),
                "--quiet",
            ]
        )
    assert code == 0, err.getvalue()
    assert "2 SMILES could not be featurised" in err.getvalue()  # a warning, shown with --quiet
    assert "row 3: 'not a molecule'" in err.getvalue() and "row 7" in err.getvalue()
    model = load_model(tmp_path / "run")
    assert model.input_shape == (64 + 64 + 1,)
    assert model.feature_names[:2] == ("morgan_0", "morgan_1")
    assert model.feature_names[64] == "morgan_count_0" and model.feature_names[-1] == "mass"

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(
            [
                "predict",
                str(tmp_path / "run"),
                "--data",
                str(tmp_path / "train.csv"),
                "--out",
                str(tmp_path / "pred.csv"),
            ]
        )
    assert code == 0
    assert "row 3" in err.getvalue()
    predictions = pd.read_csv(tmp_path / "pred.csv")
    assert predictions["row"].tolist() == [r for r in range(60) if r not in (3, 7)]


def test_smiles_config_errors_name_the_problem(tmp_path: Any) -> None:
    from taskmask.app.config import RunConfig

    with pytest.raises(ValueError, match="give features"):
        RunConfig.model_validate(
            {"data": {"train": "t.csv"}, "tasks": [{"name": "a", "kind": "binary"}]}
        )
    with pytest.raises(ValueError, match="also a feature"):
        RunConfig.model_validate(
            {
                "data": {"train": "t.csv", "features": ["smiles"], "smiles": {}},
                "tasks": [{"name": "a", "kind": "binary"}],
            }
        )
    with pytest.raises(ValueError, match="kind"):
        RunConfig.model_validate(
            {
                "data": {"train": "t.csv", "smiles": {"kind": "maccs"}},
                "tasks": [{"name": "a", "kind": "binary"}],
            }
        )


def test_a_file_where_no_smiles_parses_is_an_error_naming_it(tmp_path: Any) -> None:
    import pandas as pd

    from taskmask.data.chem import SmilesFeatures
    from taskmask.data.tables import read_dataset

    path = tmp_path / "bad.csv"
    pd.DataFrame({"smiles": ["xx", "yy"], "a": [0, 1]}).to_csv(path, index=False)
    with pytest.raises(TaskmaskError, match=r"bad\.csv: no SMILES in column 'smiles'"):
        read_dataset(path, feature_names=(), targets={"a": "a"}, smiles=SmilesFeatures())


def test_the_molecules_guide_runs_as_written() -> None:
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "molecules.md"
    (block,) = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)
    namespace: dict[str, Any] = {"print": lambda *args, **kwargs: None}
    exec(compile(block, str(page), "exec"), namespace)
    assert [f.row for f in namespace["failures"]] == list(range(11, 120, 12))
    assert len(namespace["kept"]) == 110
    parts = namespace["parts"]
    assert min(len(parts.train), len(parts.validation), len(parts.test)) > 0
    assert namespace["X"].shape[1] == 1024 + len(descriptor_names())
    assert len(namespace["result"].history) == 3
