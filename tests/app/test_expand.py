"""Task entries that expand into one task per column, kinds inferred; compressed CSV files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from taskmask.app.config import load_config
from taskmask.app.expand import infer_kind
from taskmask.app.runs import train_run
from taskmask.data.tables import read_table
from taskmask.errors import TaskmaskError


def _wide(tmp_path: Path, n_tasks: int = 600, n_rows: int = 40, suffix: str = ".csv") -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x0": rng.normal(size=n_rows), "x1": rng.normal(size=n_rows)})
    labels = rng.integers(0, 2, size=(n_rows, n_tasks)).astype(float)
    labels[rng.random(labels.shape) < 0.7] = np.nan  # most labels missing
    labels[0, :] = 1.0  # every task has a positive
    assays = pd.DataFrame(labels, columns=[f"assay_{j:03d}" for j in range(n_tasks)])
    frame = pd.concat([frame, assays], axis=1).assign(logS=rng.normal(size=n_rows))
    path = tmp_path / f"wide{suffix}"
    frame.to_csv(path, index=False)
    return path


def _config(tmp_path: Path, train: Path, *entries: dict[str, object]) -> Path:
    raw = {"data": {"train": train.name, "features": ["x0", "x1"]}, "tasks": list(entries)}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_one_entry_expands_into_600_tasks_with_kinds_inferred(tmp_path: Path) -> None:
    train = _wide(tmp_path)
    entries = {"from_columns": "assay_*", "pos_weight": "balanced"}, {"from_columns": "*"}
    config = load_config(_config(tmp_path, train, *entries))
    names = [spec.name for spec in config.tasks]
    assert names == [f"assay_{j:03d}" for j in range(600)] + ["logS"]  # features never match
    assert {spec.kind for spec in config.tasks[:600]} == {"binary"}
    assert config.tasks[600].kind == "regression"
    assert all(spec.pos_weight == "balanced" for spec in config.tasks[:600])
    assert config.tasks[5].source == "assay_005"


def test_patterns_exclude_and_first_entry_wins(tmp_path: Path) -> None:
    train = _wide(tmp_path, n_tasks=12)
    config = load_config(
        _config(
            tmp_path,
            train,
            {"name": "logS", "kind": "regression"},
            {"from_columns": ["assay_00*"], "exclude": ["assay_003"], "kind": "binary"},
            {"from_columns": ["assay_*"], "weight": 2.0},
        )
    )
    names = [spec.name for spec in config.tasks]
    assert names[0] == "logS"
    assert names[1:10] == [f"assay_{j:03d}" for j in range(10) if j != 3]
    assert names[10:] == ["assay_003", "assay_010", "assay_011"]
    assert [spec.weight for spec in config.tasks[10:]] == [2.0, 2.0, 2.0]


def test_pattern_matching_nothing_names_the_entry_and_file(tmp_path: Path) -> None:
    train = _wide(tmp_path, n_tasks=3)
    with pytest.raises(TaskmaskError, match=r"tasks\[0\]\.from_columns: \['NR-\*'\] match no"):
        load_config(_config(tmp_path, train, {"from_columns": ["NR-*"]}))


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([0, 1, np.nan, 1, -1], "binary"),
        (["a", "b", np.nan, "a"], "multiclass"),
        ([0.5, 1.25, 3.0, np.nan], "regression"),
        (list(range(50)), "regression"),
    ],
)
def test_inferred_kind(values: list[object], kind: str) -> None:
    assert infer_kind(np.array(values, dtype=object), where="col") == kind


def test_few_integers_are_ambiguous_and_ask_for_a_kind() -> None:
    with pytest.raises(TaskmaskError, match=r"column 'grade'.*\{0, 1, 2, 3\}.*give kind"):
        infer_kind(np.array([0, 1, 2, 3, 2]), where="column 'grade'")


@pytest.mark.parametrize("suffix", [".csv.gz", ".csv.bz2"])
def test_compressed_csv_reads_like_csv(tmp_path: Path, suffix: str) -> None:
    plain = read_table(_wide(tmp_path, n_tasks=4))
    packed = read_table(_wide(tmp_path, n_tasks=4, suffix=suffix))
    assert list(packed.columns) == list(plain.columns)
    for name, values in plain.columns.items():
        np.testing.assert_array_equal(packed.columns[name], values)


def test_compressed_csv_short_row_is_named(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "bad.csv.gz"
    with gzip.open(path, "wt") as file:
        file.write("x0,x1,y\n1,2,0\n3,4\n")
    with pytest.raises(TaskmaskError, match="row 1 has 2 fields"):
        read_table(path)


def test_task_without_positive_is_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    train = _wide(tmp_path, n_tasks=3)
    frame = pd.read_csv(train)
    frame["assay_001"] = frame["assay_001"].where(frame["assay_001"].isna(), 0.0)
    frame.to_csv(train, index=False)
    config = load_config(_config(tmp_path, train, {"from_columns": "assay_*"}))
    config = config.model_copy(
        update={"training": config.training.model_copy(update={"epochs": 1})}
    )
    with caplog.at_level(logging.WARNING, logger="taskmask"):
        train_run(config, tmp_path / "run")
    warned = [r.getMessage() for r in caplog.records if "no positive" in r.getMessage()]
    assert len(warned) == 1 and "'assay_001'" in warned[0] and "assay_000" not in warned[0]
