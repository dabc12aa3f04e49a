"""Hostile input through the CLI and the Python API: every case exits 2 (or raises
`TaskmaskError`) with one message naming the file, column, task or path, and leaves nothing
half-written behind."""

from __future__ import annotations

import errno
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError
from test_cli import config_dict, make_table, run_cli, write_config

import taskmask.app.run_files as runs
from taskmask._io import atomic_directory, write_atomically
from taskmask.app.cli import main
from taskmask.errors import InvalidFieldsError, TaskmaskError
from taskmask.persistence import META_FILE, load_model, save_model
from taskmask.predict import with_thresholds
from taskmask.tasks import Task


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained run directory ``run`` beside ``train.csv`` (no plots)."""
    directory = tmp_path_factory.mktemp("bad_input")
    make_table().to_csv(directory / "train.csv", index=False)
    config = write_config(directory, config_dict())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("taskmask.app.plots.plot_history", lambda *args, **kwargs: [])
        code = main(["train", "--config", str(config), "--out", str(directory / "run"), "--quiet"])
    assert code == 0
    return directory / "run"


def _fails(capsys: pytest.CaptureFixture[str], *argv: Any) -> str:
    """Run the CLI, expect exit 2 and one ``taskmask CMD: error:`` message; return it."""
    code, out, err = run_cli(capsys, *argv)
    assert (code, out) == (2, ""), err
    assert err.startswith(f"taskmask {argv[0]}: error: ") and "Traceback" not in err
    assert err.count("error:") == 1
    return err


def _every_command(
    capsys: pytest.CaptureFixture[str], run_dir: Path, data: Path, tmp_path: Path
) -> list[str]:
    """The messages of train, evaluate and predict on ``data``."""
    config = write_config(tmp_path, config_dict(train=str(data)))
    output = tmp_path / "pred.csv"
    messages = [
        _fails(capsys, "train", "--config", config, "--out", tmp_path / "run"),
        _fails(capsys, "evaluate", run_dir, "--data", data),
        _fails(capsys, "predict", run_dir, "--data", data, "--out", output),
    ]
    assert not output.exists() and not (tmp_path / "run").exists()
    return messages


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_file_with_a_header_and_no_rows(
    capsys: pytest.CaptureFixture[str], run_dir: Path, tmp_path: Path, suffix: str
) -> None:
    data = tmp_path / f"empty{suffix}"
    empty = make_table().iloc[:0]
    empty.to_csv(data, index=False) if suffix == ".csv" else empty.to_parquet(data)
    for message in _every_command(capsys, run_dir, data, tmp_path):
        assert f"{data}: no rows" in message


def test_a_repeated_csv_column_is_refused_not_renamed(
    capsys: pytest.CaptureFixture[str], run_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "dup.csv"
    text = (run_dir.parent / "train.csv").read_text().splitlines()
    data.write_text("\n".join([text[0] + ",x1", *(line + ",7" for line in text[1:])]) + "\n")
    for message in _every_command(capsys, run_dir, data, tmp_path):
        assert f"{data}: columns ['x1'] appear more than once" in message


def test_a_repeated_parquet_column_is_refused(
    capsys: pytest.CaptureFixture[str], run_dir: Path, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = make_table().drop(columns="colour")
    columns = [pa.array(frame[name]) for name in frame.columns]
    data = tmp_path / "dup.parquet"
    pq.write_table(pa.table([*columns, columns[0]], names=[*frame.columns, "x0"]), data)
    message = _fails(capsys, "evaluate", run_dir, "--data", data)
    assert f"{data}: columns ['x0'] appear more than once" in message


def _edit_lines(source: Path, target: Path, edit: Any) -> Path:
    lines = source.read_text().splitlines()
    target.write_text("\n".join(edit(lines)) + "\n")
    return target


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda ls: [*ls[:5], ls[5].split(",")[0], *ls[6:]],
            "row 4 has 1 fields; the header has 8",
        ),
        (lambda ls: [ls[0], *(line + ",9" for line in ls[1:])], "more fields than the header's 8"),
        (
            lambda ls: [*ls[:5], ls[5] + ",9", *ls[6:]],
            "line 6 has 9 fields; the header and the rows before have 8",
        ),
        (lambda ls: [ls[0], "1e308," + ls[1].split(",", 1)[1], *ls[2:]], "'x0' holds 1e+308"),
    ],
    ids=["short row", "every row long", "one row long", "beyond float32"],
)
def test_ragged_rows_and_huge_numbers_name_the_file_and_row(
    capsys: pytest.CaptureFixture[str], run_dir: Path, tmp_path: Path, edit: Any, expected: str
) -> None:
    data = _edit_lines(run_dir.parent / "train.csv", tmp_path / "bad.csv", edit)
    for message in _every_command(capsys, run_dir, data, tmp_path):
        assert str(data) in message and expected in message


def test_a_one_row_training_file_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = tmp_path / "one.csv"
    make_table(1).to_csv(data, index=False)
    config = write_config(tmp_path, config_dict(train=str(data)))
    message = _fails(capsys, "train", "--config", config, "--out", tmp_path / "run")
    assert f"{data}: " in message and "task " in message


def test_a_key_given_twice_in_the_yaml_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    make_table().to_csv(tmp_path / "train.csv", index=False)
    text = yaml.safe_dump(config_dict()) + "tasks: [{name: tox, kind: binary}]\n"
    config = write_config(tmp_path, text)
    message = _fails(capsys, "train", "--config", config, "--out", tmp_path / "run")
    assert f"{config}: not valid YAML: line " in message
    assert "duplicate key 'tasks' (first on line " in message


@pytest.mark.parametrize("threshold", [1.5, -0.1, ".nan", [0.2, 2.0]])
def test_a_threshold_outside_0_1_in_a_config_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, threshold: Any
) -> None:
    make_table().to_csv(tmp_path / "train.csv", index=False)
    raw = config_dict()
    raw["tasks"][1]["threshold"] = threshold
    text = yaml.safe_dump(raw).replace("'.nan'", ".nan")
    config = write_config(tmp_path, text)
    message = _fails(capsys, "train", "--config", config, "--out", tmp_path / "run")
    assert "tasks[1] (task 'scene').threshold: each threshold must be a probability in [0, 1]" in (
        message
    )


@pytest.mark.parametrize("threshold", [1.01, -1.0, math.nan, (0.5, math.inf)])
def test_task_and_with_thresholds_refuse_a_threshold_outside_0_1(
    run_dir: Path, threshold: Any
) -> None:
    with pytest.raises(TaskmaskError, match=r"task 'm': invalid fields:\n  threshold: each"):
        Task(name="m", kind="multilabel", labels=("a", "b"), threshold=threshold)
    model = load_model(run_dir)
    before = model.tasks
    with pytest.raises(TaskmaskError, match=r"task 'scene': invalid fields:\n  threshold: "):
        with_thresholds(model, {"scene": threshold})
    assert model.tasks == before


def test_python_task_errors_are_taskmask_errors_worded_as_the_cli_words_them() -> None:
    with pytest.raises(InvalidFieldsError) as info:
        Task(name="t", kind="binary", weight=-1, huber_delta=0)
    error = info.value
    assert isinstance(error, TaskmaskError) and isinstance(error, ValueError)
    assert isinstance(error, ValidationError)  # `except ValidationError` code still catches it
    assert [item["loc"] for item in error.errors()] == [("weight",), ("huber_delta",)]
    assert str(error) == (
        "task 't': invalid fields:\n"
        "  weight: Input should be greater than or equal to 0 (got -1)\n"
        "  huber_delta: Input should be greater than 0 (got 0)"
    )


def _copy_run(run_dir: Path, target: Path) -> Path:
    subprocess.run(["cp", "-r", str(run_dir), str(target)], check=True)
    return target


@pytest.mark.parametrize("threshold", [7.0, None])
def test_an_edited_model_json_threshold_is_refused(
    capsys: pytest.CaptureFixture[str], run_dir: Path, tmp_path: Path, threshold: Any
) -> None:
    run = _copy_run(run_dir, tmp_path / "run")
    meta = json.loads((run / META_FILE).read_text())
    meta["tasks"][0]["threshold"] = threshold if threshold is not None else float("nan")
    (run / META_FILE).write_text(json.dumps(meta))
    message = _fails(capsys, "evaluate", run, "--data", run_dir.parent / "train.csv")
    assert f"{run / META_FILE}: not a valid taskmask model description" in message
    assert "threshold" in message


def test_save_model_never_replaces_a_file_or_a_foreign_directory(
    run_dir: Path, tmp_path: Path
) -> None:
    model = load_model(run_dir)
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    with pytest.raises(TaskmaskError, match=f"{precious}: is a file, not a directory"):
        save_model(model, precious)
    assert precious.read_text() == "keep me"
    with pytest.raises(TaskmaskError, match=f"{tmp_path}: a directory that holds no model.json"):
        save_model(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_train_with_overwrite_never_replaces_a_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    make_table().to_csv(tmp_path / "train.csv", index=False)
    config = write_config(tmp_path, config_dict())
    out = tmp_path / "notes.txt"
    out.write_text("keep me")
    message = _fails(capsys, "train", "--config", config, "--out", out, "--overwrite")
    assert f"{out}: is a file, not a directory" in message
    assert out.read_text() == "keep me"


def _disk_full(*_: Any, **__: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_names_the_file_being_written(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    with pytest.raises(OSError, match="No space left on device") as info:
        write_atomically(target, _disk_full)
    assert info.value.filename == str(target) and info.value.errno == errno.ENOSPC
    with pytest.raises(OSError, match="No space left on device") as info:
        atomic_directory(tmp_path / "model", _disk_full)
    assert info.value.filename == str(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_through_the_cli_names_the_output(
    capsys: pytest.CaptureFixture[str],
    run_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pd.DataFrame, "to_csv", _disk_full)
    output = tmp_path / "pred.csv"
    message = _fails(
        capsys, "predict", run_dir, "--data", run_dir.parent / "train.csv", "--out", output
    )
    assert message.strip() == f"taskmask predict: error: {output}: No space left on device"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["directory", "inside a file"])
def test_an_output_that_cannot_be_a_file_is_named(
    capsys: pytest.CaptureFixture[str], run_dir: Path, tmp_path: Path, where: str
) -> None:
    (tmp_path / "file.csv").write_text("x\n")
    output = tmp_path if where == "directory" else tmp_path / "file.csv" / "pred.csv"
    message = _fails(
        capsys, "predict", run_dir, "--data", run_dir.parent / "train.csv", "--out", output
    )
    expected = f"{output}: is a directory" if where == "directory" else f"{tmp_path / 'file.csv'}"
    assert expected in message and ".tmp" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.csv"]


def test_reading_a_bad_file_never_warns(run_dir: Path, tmp_path: Path) -> None:
    data = _edit_lines(
        run_dir.parent / "train.csv",
        tmp_path / "big.csv",
        lambda ls: [ls[0], "-3e300," + ls[1].split(",", 1)[1], *ls[2:]],
    )
    code = subprocess.run(
        [sys.executable, "-W", "error", "-m", "taskmask", "evaluate", str(run_dir), "--data", data],
        capture_output=True,
        text=True,
        check=False,
    )
    assert code.returncode == 2 and "Warning" not in code.stderr
    assert code.stderr.startswith(f"taskmask evaluate: error: {data}: feature 'x0' holds -3e+300")


def test_runs_checks_the_output_before_predicting(tmp_path: Path) -> None:
    with pytest.raises(TaskmaskError, match="is a directory; the CSV output names the file"):
        runs.write_csv_atomically(pd.DataFrame({"a": np.arange(3)}), tmp_path)
