"""Predictions keep ID columns: ``--keep-columns`` and ``data.id_columns``, written first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from taskmask.app.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("keep")
    rng = np.random.default_rng(0)
    x = rng.random((60, 2))
    frame = pd.DataFrame({"mol.id": [f"M{i:03d}" for i in range(60)], "x0": x[:, 0], "x1": x[:, 1]})
    frame["smiles"] = ["C" * (1 + i % 5) for i in range(60)]
    frame["tox"] = (x[:, 0] > 0.5).astype(float)
    frame.to_csv(directory / "train.csv", index=False)
    raw = {
        "data": {"train": "train.csv", "features": ["x0", "x1"], "id_columns": ["mol.id"]},
        "tasks": [{"name": "tox", "kind": "binary"}],
        "model": {"trunk": {"hidden": [4]}},
        "training": {"epochs": 1, "batch_size": 32},
    }
    (directory / "run.yaml").write_text(yaml.safe_dump(raw))
    code = main(
        ["train", "-q", "--config", str(directory / "run.yaml"), "--out", str(directory / "run")]
    )
    assert code == 0
    return directory / "run"


def _predict(run: Path, out: Path | str, *extra: str) -> int:
    data = run.parent / "train.csv"
    return main(["predict", "-q", str(run), "--data", str(data), "--out", str(out), *extra])


def test_config_id_columns_then_keep_columns_lead_the_predictions(
    run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pred.parquet"
    assert _predict(run, out, "--keep-columns", "smiles,x0", "--keep-columns", "mol.id") == 0
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["mol.id", "smiles", "x0", "tox.prob", "tox.pred"]
    source = pd.read_csv(run.parent / "train.csv")
    assert list(frame["mol.id"]) == list(source["mol.id"])
    np.testing.assert_array_equal(frame["x0"].to_numpy(), source["x0"].to_numpy())


def test_kept_columns_on_stdout(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert _predict(run, "-", "--keep-columns", "smiles") == 0
    header, first = capsys.readouterr().out.splitlines()[:2]
    assert header == "mol.id,smiles,tox.prob,tox.pred"
    assert first.startswith("M000,C,")


def test_unknown_or_clashing_kept_column_exits_2(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert _predict(run, tmp_path / "p.csv", "--keep-columns", "smile") == 2
    err = capsys.readouterr().err
    assert "no column 'smile' (kept column)" in err and "did you mean 'smiles'?" in err
    data = pd.read_csv(run.parent / "train.csv").assign(**{"tox.prob": 0.0})
    data.to_csv(tmp_path / "clash.csv", index=False)
    code = main(
        [
            "predict",
            "-q",
            str(run),
            "--data",
            str(tmp_path / "clash.csv"),
            "--out",
            str(tmp_path / "p.csv"),
            "--keep-columns",
            "tox.prob",
        ]
    )
    assert code == 2
    assert (
        "kept columns ['tox.prob'] have the names of prediction columns" in capsys.readouterr().err
    )
    assert not (tmp_path / "p.csv").exists()
