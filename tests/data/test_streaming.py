"""Training streamed from Parquet means what training in memory means: the same rows and
labels (nulls, blanks and sentinels missing), the same statistics, every row once per epoch,
per-task loss sums and counts equal over an epoch, training equal where the order is the same,
runs that resume bit for bit, sharded ranks under torchrun; and bad files fail naming the
file, row group and column."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from safetensors.torch import load_file
from streaming_script import (
    FEATURES,
    FULL_BATCH,
    TARGETS,
    TASKS,
    in_memory,
    model,
    source,
    table,
    write_parts,
)

import taskmask
from taskmask._world import World
from taskmask.api import resolve_tasks, standardization
from taskmask.app.cli import main
from taskmask.data import ParquetSource, label_coverage
from taskmask.errors import TaskmaskError
from taskmask.training import BatchLoss, TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")
N_ROWS = 300


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return table(N_ROWS)


@pytest.fixture(scope="module")
def parts(frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 files of 100 rows, in row groups of 32 (4 per file)."""
    directory = tmp_path_factory.mktemp("parts")
    write_parts(frame, directory, 3, 32)
    return directory


def _plan(tasks: tuple[taskmask.Task, ...]) -> BatchLoss:
    return BatchLoss(tasks, loss_fns={}, pos_weights={t.name: None for t in tasks}, device=CPU)


def _ids(pieces: list[taskmask.MultiTaskData]) -> list[int]:
    return [int(i) for piece in pieces for i in piece.inputs[:, 0]]


def test_a_directory_reads_as_the_frame_does_in_memory(frame: pd.DataFrame, parts: Path) -> None:
    streamed = source(parts)
    labels = {"b": frame["b"], "m": frame[["m0", "m1"]], "c": frame["c"], "r": frame["r"]}
    assert streamed.tasks == resolve_tasks(TASKS, labels)
    assert streamed.tasks[2].labels == ("blue", "green", "red")
    assert len(streamed) == N_ROWS and len(streamed.row_groups) == 12
    read, expected = streamed.read(), in_memory(frame, streamed.tasks)
    assert torch.equal(read.inputs, expected.inputs)
    for name, enc in expected.labels.items():
        assert torch.equal(read.labels[name].target, enc.target), name
        assert torch.equal(read.labels[name].observed, enc.observed), name


def test_statistics_equal_those_of_the_data_in_memory(frame: pd.DataFrame, parts: Path) -> None:
    streamed = source(parts)
    expected = in_memory(frame, streamed.tasks)
    assert streamed.n_observed() == expected.n_observed()
    counts = {
        "b": int((frame["b"].notna() & (frame["b"] != -1)).sum()),
        "m": int(frame[["m0", "m1"]].notna().to_numpy().sum()),
        "c": int((frame["c"].notna() & (frame["c"].str.strip() != "")).sum()),
        "r": int(frame["r"].notna().sum()),
    }
    assert streamed.n_observed() == counts  # nulls, blanks and the sentinel never count
    coverage, reference = streamed.coverage(), label_coverage(expected, streamed.tasks)
    pd.testing.assert_frame_equal(coverage.labels, reference.labels)
    pd.testing.assert_frame_equal(coverage.co_observed, reference.co_observed)
    mean, scale = streamed.standardization()
    expected_mean, expected_scale = standardization(expected.inputs)
    torch.testing.assert_close(mean, expected_mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(scale, expected_scale, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("shuffle_buffer", "batch_size"), [(0, 7), (16, 64), (1000, 300)])
def test_every_row_once_per_epoch_with_its_own_labels(
    frame: pd.DataFrame, parts: Path, shuffle_buffer: int, batch_size: int
) -> None:
    streamed = source(parts, shuffle_buffer=shuffle_buffer, read_rows=20)
    plan = _plan(streamed.tasks)
    batches = streamed.batches(plan.tasks, batch_size, World(0, 1, CPU), pack=plan.pack)
    expected = plan.pack(in_memory(frame, streamed.tasks))
    generator = torch.Generator().manual_seed(0)
    epochs = [list(batches.epoch(generator)) for _ in range(2)]
    for pieces in epochs:
        assert sorted(_ids(pieces)) == list(range(N_ROWS))
        assert all(len(p) == batch_size for p in pieces[:-1])
        for piece in pieces:
            rows = expected.take(piece.inputs[:, 0].long())
            assert torch.equal(piece.inputs, rows.inputs)
            for name, enc in rows.labels.items():
                assert torch.equal(piece.labels[name].target, enc.target)
                assert torch.equal(piece.labels[name].observed, enc.observed)
    assert _ids(epochs[0]) != _ids(epochs[1])  # each epoch its own order
    again = list(batches.epoch(torch.Generator().manual_seed(0)))
    assert _ids(again) == _ids(epochs[0])  # the same seed, the same order


def test_an_epochs_loss_sums_and_counts_equal_the_in_memory_ones(
    frame: pd.DataFrame, parts: Path
) -> None:
    streamed = source(parts, shuffle_buffer=40, read_rows=25)
    net, plan = model(streamed.tasks), _plan(streamed.tasks)
    sums, counts = torch.zeros(len(TASKS)), torch.zeros(len(TASKS))
    with torch.no_grad():
        for piece in streamed.batches(plan.tasks, 16, World(0, 1, CPU), pack=plan.pack).epoch(
            torch.Generator()
        ):
            piece_sums, piece_counts = plan(net(piece.inputs), piece)
            sums, counts = sums + piece_sums, counts + piece_counts
        data = plan.pack(in_memory(frame, streamed.tasks))
        expected_sums, expected_counts = plan(net(data.inputs), data)
    assert torch.equal(counts, expected_counts)
    assert counts.tolist() == list(streamed.n_observed().values())
    torch.testing.assert_close(sums, expected_sums, rtol=1e-5, atol=1e-5)


def test_full_batch_training_equals_training_in_memory(frame: pd.DataFrame, parts: Path) -> None:
    streamed = source(parts, shuffle_buffer=50)
    a, b = model(streamed.tasks), model(streamed.tasks)
    config = FULL_BATCH.model_copy(update={"train_metrics": False})
    streamed_history = Trainer(config).fit(a, streamed)
    history = Trainer(config).fit(b, in_memory(frame, streamed.tasks))
    for key, value in history[-1].items():
        if key != "seconds":
            assert streamed_history[-1][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    for key, value in b.state_dict().items():
        torch.testing.assert_close(a.state_dict()[key], value, rtol=1e-5, atol=1e-6)


def test_row_groups_of_one_row_train_bit_for_bit_as_in_memory(
    frame: pd.DataFrame, tmp_path: Path
) -> None:
    """With one row per row group and no buffer, the row-group order is the permutation that
    the in-memory batches draw from the same generator: the first epoch is the same."""
    write_parts(frame.iloc[:60], tmp_path, 1, 1)
    streamed = source(tmp_path, shuffle_buffer=0)
    a, b = model(streamed.tasks), model(streamed.tasks)
    config = TrainConfig(epochs=1, batch_size=8, lr=1e-2, progress=False, train_metrics=False)
    first = Trainer(config).fit(a, streamed)
    second = Trainer(config).fit(b, in_memory(frame.iloc[:60], streamed.tasks))
    assert first[0]["train/loss"] == second[0]["train/loss"]
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_a_resumed_streamed_run_ends_as_an_uninterrupted_one(parts: Path, tmp_path: Path) -> None:
    streamed = source(parts, shuffle_buffer=20, read_rows=30)
    base = {"batch_size": 32, "lr": 1e-2, "progress": False, "checkpoint_dir": tmp_path / "ck"}
    first, resumed, whole = (model(streamed.tasks) for _ in range(3))
    Trainer(TrainConfig(epochs=2, **base)).fit(first, streamed)
    history = Trainer(TrainConfig(epochs=4, **base)).fit(resumed, streamed, resume=True)
    straight = Trainer(TrainConfig(epochs=4, **{**base, "checkpoint_dir": None})).fit(
        whole, streamed
    )
    assert [r["train/loss"] for r in history] == [r["train/loss"] for r in straight]
    assert all(torch.equal(resumed.state_dict()[k], v) for k, v in whole.state_dict().items())


def test_fit_streams_a_source_as_it_fits_the_frame(frame: pd.DataFrame, parts: Path) -> None:
    """Standardisation, balanced positive weights and regression biases from one pass; with
    one batch per epoch the model is the one fitted in memory."""
    tasks = (TASKS[0].model_copy(update={"pos_weight": "balanced"}), *TASKS[1:])
    streamed = ParquetSource(parts, features=FEATURES, tasks=tasks, targets=TARGETS)
    labels = {"b": frame["b"], "m": frame[["m0", "m1"]], "c": frame["c"], "r": frame["r"]}
    settings = {"trunk": taskmask.MLPConfig(hidden=(8,)), "epochs": 3, "batch_size": 1000}
    settings.update(lr=1e-2, progress=False, train_metrics=False)
    fitted = taskmask.fit(streamed, **settings)
    reference = taskmask.fit(frame[FEATURES], labels, tasks, **settings)
    assert fitted.model.tasks == reference.model.tasks
    assert isinstance(fitted.model.tasks[0].pos_weight, tuple)
    for key, value in reference.model.state_dict().items():
        torch.testing.assert_close(fitted.model.state_dict()[key], value, rtol=1e-4, atol=1e-5)


def test_fit_validates_on_data_in_memory_or_a_small_source(
    frame: pd.DataFrame, parts: Path, tmp_path: Path
) -> None:
    write_parts(table(80, seed=1), tmp_path, 1, 50)
    validation = source(tmp_path)
    settings = {"trunk": taskmask.MLPConfig(hidden=(8,)), "epochs": 1, "progress": False}
    result = taskmask.fit(source(parts), validation=validation, **settings)
    columns = set(result.history.columns)
    assert {"val/b/roc_auc", "val/c/accuracy", "train/b/loss"} <= columns
    assert not any(c.startswith("train/") and c.endswith("roc_auc") for c in columns)
    other = table(80, seed=1)
    labels = {"b": other["b"], "m": other[["m0", "m1"]], "c": other["c"], "r": other["r"]}
    again = taskmask.fit(source(parts), validation=(other[FEATURES], labels), **settings)
    assert again.history["val/loss"].tolist() == result.history["val/loss"].tolist()
    with pytest.raises(TaskmaskError, match="leave labels, tasks out"):
        taskmask.fit(source(parts), labels, TASKS, **settings)
    with pytest.raises(TaskmaskError, match="validation_split needs in-memory"):
        taskmask.fit(source(parts), validation_split=0.2, **settings)


def _write(frame: pd.DataFrame, path: Path, row_group_size: int = 32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(rows, path, row_group_size=row_group_size)


@pytest.mark.parametrize(
    ("value", "problem"),
    [(np.nan, "is NaN or infinite"), (np.inf, "is NaN or infinite"), (None, "is null")],
)
def test_bad_feature_values_name_the_file_row_group_column_and_row(
    frame: pd.DataFrame, tmp_path: Path, value: float | None, problem: str
) -> None:
    rows = pa.Table.from_pandas(frame.iloc[:100], preserve_index=False)
    x1 = [value if i == 70 else v for i, v in enumerate(frame["x1"][:100].tolist())]
    rows = rows.set_column(FEATURES.index("x1"), "x1", pa.array(x1, pa.float32()))
    pq.write_table(rows, tmp_path / "part.parquet", row_group_size=32)
    where = rf"part.parquet, row group 2 .*feature column 'x1' {problem} .*at row 70 of the file"
    with pytest.raises(TaskmaskError, match=where):
        source(tmp_path).standardization()
    streamed = source(tmp_path)
    batches = streamed.batches(streamed.tasks, 8, World(0, 1, CPU), pack=_plan(streamed.tasks).pack)
    with pytest.raises(TaskmaskError, match=where):
        list(batches.epoch(torch.Generator()))


def test_bad_labels_name_the_file_and_row_group(frame: pd.DataFrame, tmp_path: Path) -> None:
    bad = frame.iloc[:100].copy()
    bad["b"] = bad["b"].astype("float64")
    bad.loc[40, "b"] = 2.0
    _write(bad, tmp_path / "part.parquet")
    with pytest.raises(TaskmaskError, match=r"part.parquet, row group 1 .*task 'b'.*value 2"):
        source(tmp_path).n_observed()


def test_an_all_missing_task_is_refused_before_training(
    frame: pd.DataFrame, tmp_path: Path
) -> None:
    empty = frame.iloc[:50].copy()
    empty["r"] = np.nan
    _write(empty, tmp_path / "part.parquet")
    streamed = source(tmp_path)
    assert streamed.n_observed()["r"] == 0
    with pytest.raises(TaskmaskError, match=r"tasks \['r'\] have no observed label"):
        Trainer(TrainConfig(epochs=1, progress=False)).fit(model(streamed.tasks), streamed)


def test_files_that_do_not_fit_are_named(frame: pd.DataFrame, tmp_path: Path) -> None:
    _write(frame.iloc[:50], tmp_path / "ok" / "part-0.parquet")
    _write(frame.iloc[50:100].drop(columns="r"), tmp_path / "ok" / "part-1.parquet")
    with pytest.raises(TaskmaskError, match=r"part-1.parquet: no label column 'r'"):
        source(tmp_path / "ok")
    with pytest.raises(TaskmaskError, match=r"no feature column 'x_1'.*did you mean 'x1'"):
        ParquetSource(tmp_path / "ok" / "part-0.parquet", features=["x_1"], tasks=TASKS[:1])
    text = frame.iloc[:20].assign(x0="a")
    _write(text, tmp_path / "text" / "t.parquet")
    with pytest.raises(TaskmaskError, match=r"'x0' has type (large_)?string; features must be"):
        source(tmp_path / "text")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "j.parquet").write_bytes(b"not a parquet file at all")
    with pytest.raises(TaskmaskError, match=r"j.parquet: not a readable Parquet file"):
        source(tmp_path / "junk")
    (tmp_path / "none").mkdir()
    with pytest.raises(TaskmaskError, match=r"none: no .parquet or .pq files"):
        source(tmp_path / "none")
    with pytest.raises(TaskmaskError, match=r"absent.parquet: file not found"):
        source(tmp_path / "absent.parquet")


def test_a_corrupt_row_group_is_named(frame: pd.DataFrame, tmp_path: Path) -> None:
    write_parts(frame.iloc[:100], tmp_path, 1, 32)
    path = tmp_path / "part-0.parquet"
    content = bytearray(path.read_bytes())
    content[4:60] = b"\xff" * 56  # the first page header of row group 0
    path.write_bytes(bytes(content))
    with pytest.raises(TaskmaskError, match=r"part-0.parquet: row group 0 is not readable"):
        source(tmp_path).read()


def test_settings_are_checked(parts: Path) -> None:
    with pytest.raises(TaskmaskError, match="targets for unknown tasks"):
        ParquetSource(parts, features=FEATURES, tasks=TASKS, targets={"z": "b"})
    with pytest.raises(TaskmaskError, match="multiclass task reads one column"):
        ParquetSource(parts, features=FEATURES, tasks=TASKS[2:3], targets={"c": ["c", "b"]})
    with pytest.raises(TaskmaskError, match="shuffle_buffer must be >= 0"):
        source(parts, shuffle_buffer=-1)
    with pytest.raises(TaskmaskError, match="validation_split needs in-memory data"):
        config = TrainConfig(validation_split=0.2, progress=False)
        Trainer(config).fit(model(source(parts).tasks), source(parts))


def test_two_processes_read_their_own_shards(frame: pd.DataFrame, tmp_path: Path) -> None:
    """Under torchrun the ranks read disjoint row groups that make up every row, take as many
    steps, and with one global batch per epoch train the single-process model."""
    write_parts(frame, tmp_path / "data", 5, 16)
    out = tmp_path / "out"
    out.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += [str(ROOT / "tests" / "streaming_script.py"), str(tmp_path / "data"), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-4000:]
    ranks = [json.loads((out / f"rows-rank{r}.json").read_text()) for r in (0, 1)]
    for epoch in (0, 1):
        pieces = [ranks[r][epoch] for r in (0, 1)]
        assert len(pieces[0]) == len(pieces[1])  # as many steps
        rows = [sorted(i for piece in p for i in piece) for p in pieces]
        assert not set(rows[0]) & set(rows[1])
        assert sorted(rows[0] + rows[1]) == list(range(N_ROWS))
        assert all(len(piece) <= 5 for p in pieces for piece in p)  # a piece of 10 rows
    weights = [load_file(out / f"full-rank{r}.safetensors") for r in (0, 1)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    streamed = source(tmp_path / "data")
    single = model(streamed.tasks)
    Trainer(FULL_BATCH).fit(single, in_memory(frame, streamed.tasks))
    for key, value in single.state_dict().items():
        torch.testing.assert_close(weights[0][key], value, rtol=1e-4, atol=1e-5)


def _run_config(tmp_path: Path, **data: object) -> Path:
    raw = {
        "data": {"train": "parts", "features": FEATURES, "stream": True, **data},
        "tasks": [
            {"name": "b", "kind": "binary"},
            {"name": "m", "kind": "multilabel", "columns": ["m0", "m1"]},
            {"name": "c", "kind": "multiclass"},
            {"name": "r", "kind": "regression", "weight": 0.1},
        ],
        "model": {"trunk": {"hidden": [8]}},
        "training": {"epochs": 2, "batch_size": 32, "lr": 0.01},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_taskmask_train_streams_with_stream_true(
    frame: pd.DataFrame, parts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "parts").symlink_to(parts, target_is_directory=True)
    write_parts(table(80, seed=1), tmp_path / "val", 1, 50)
    config = _run_config(tmp_path, validation="val/part-0.parquet", shuffle_buffer=50)
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out)]) == 0
    printed, diagnostics = capsys.readouterr()
    assert f"label coverage over {N_ROWS} rows" in diagnostics and "validation metrics" in printed
    history = pd.read_csv(out / "history.csv")
    assert len(history) == 2 and "val/b/roc_auc" in history and "train/b/roc_auc" not in history
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["stream"] is True and saved["data"]["validation_split"] == 0.0
    assert saved["tasks"][2]["labels"] == ["blue", "green", "red"]
    coverage = pd.read_csv(out / "coverage.csv")
    expected = label_coverage(in_memory(frame, source(parts).tasks), source(parts).tasks)
    assert coverage["n_observed"].tolist() == expected.labels["n_observed"].tolist()
    assert not (tmp_path / "run.checkpoint").exists()
    assert main(["evaluate", str(out), "--data", str(tmp_path / "val" / "part-0.parquet")]) == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"validation_split": 0.2}, "stream: true has no validation_split"),
        ({"train": "t.csv"}, "stream: true reads Parquet"),
        ({"stream": False, "shuffle_buffer": 10}, "shuffle_buffer applies to stream: true only"),
        ({"shuffle_buffer": -1}, "data.shuffle_buffer: Input should be greater than or equal"),
    ],
)
def test_stream_settings_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: dict[str, object], message: str
) -> None:
    config = _run_config(tmp_path, **data)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err


def test_generated_targets_need_the_rows_in_memory(
    parts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _run_config(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["tasks"].append({"name": "s", "kind": "regression", "generator": "std"})
    config.write_text(yaml.safe_dump(raw))
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    assert "task 's': a generated target needs all rows in memory" in capsys.readouterr().err


def test_the_guide_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    guide = ROOT / "docs" / "streaming.md"
    text = guide.read_text()
    python = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    config = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    assert len(python) == 1 and len(config) == 1
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"print": lambda *args, **kwargs: None}
    exec(compile(python[0], str(guide), "exec"), namespace)
    assert len(namespace["train"]) == 10_000  # type: ignore[arg-type]
    history = namespace["result"].history  # type: ignore[attr-defined]
    assert len(history) == 3 and history["val/toxic/roc_auc"].iloc[-1] > 0.8
    (tmp_path / "run.yaml").write_text(config[0])
    assert main(["train", "--config", "run.yaml", "--out", "runs/streamed", "--quiet"]) == 0
    metrics = json.loads((tmp_path / "runs" / "streamed" / "metrics.json").read_text())
    assert metrics["validation"]["toxic"]["roc_auc"] > 0.8
