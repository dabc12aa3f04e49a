"""Checkpoint files: a round trip keeps every tensor and value; writing is atomic (a crash while
writing leaves the previous checkpoint whole); damaged files, and files that would need pickle,
are refused with a message naming the file. Model files get the same treatment."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from training_script import TASKS, model, problem

from taskmask import MLPConfig, MLPTrunk, MultiTaskModel
from taskmask.errors import TaskmaskError
from taskmask.persistence import load_model, save_model
from taskmask.training import TrainConfig, Trainer, checkpoint
from taskmask.training.checkpoint import INDEX_FILE, Checkpoint


class _Trap:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "pwned"))


def _checkpoint(epoch: int = 1) -> Checkpoint:
    tensors = {
        "model.w": torch.arange(6.0).reshape(2, 3),
        "optimizer.0.step": torch.tensor(3.0),
        "rng.shuffle": torch.Generator().manual_seed(1).get_state(),
        "empty": torch.zeros(0, 4),
        "flags": torch.tensor([True, False]),
    }
    meta = {"epoch": epoch, "history": [{"train/loss": 0.5, "val/auc": math.nan}]}
    return Checkpoint(tensors, meta)


def _tensor_file(directory: Path) -> Path:
    return directory / json.loads((directory / INDEX_FILE).read_text())["tensor_file"]


def test_round_trip_keeps_tensors_and_values(tmp_path: Path) -> None:
    saved = _checkpoint()
    checkpoint.save(tmp_path, saved)
    loaded = checkpoint.load(tmp_path)
    assert loaded.tensors.keys() == saved.tensors.keys()
    for key, value in saved.tensors.items():
        assert torch.equal(loaded.tensors[key], value), key
        assert loaded.tensors[key].dtype == value.dtype
    assert loaded.meta["epoch"] == 1 and loaded.meta["format_version"] == 1
    assert loaded.meta["history"][0]["train/loss"] == 0.5
    assert math.isnan(loaded.meta["history"][0]["val/auc"])


def test_each_save_replaces_the_last_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    for epoch in (1, 2, 3):
        checkpoint.save(tmp_path, _checkpoint(epoch))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and INDEX_FILE in names
    assert checkpoint.load(tmp_path).meta["epoch"] == 3


@pytest.mark.parametrize("failing", ["tensors", "index"])
def test_a_crash_while_saving_leaves_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    checkpoint.save(tmp_path, _checkpoint(1))

    def crash(path: Path, *_: Any) -> None:
        Path(path).write_bytes(b"half a file")
        raise KeyboardInterrupt  # what a kill looks like from inside: the write stops

    if failing == "tensors":
        monkeypatch.setattr(checkpoint, "save_file", lambda _tensors, path: crash(path))
    else:
        real = Path.write_text
        monkeypatch.setattr(
            Path, "write_text", lambda p, *a, **k: crash(p) if p.suffix == ".tmp" else real(p, *a)
        )
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path, _checkpoint(2))
    monkeypatch.undo()
    assert checkpoint.load(tmp_path).meta["epoch"] == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_a_truncated_tensor_file_is_refused(tmp_path: Path) -> None:
    checkpoint.save(tmp_path, _checkpoint())
    tensors = _tensor_file(tmp_path)
    tensors.write_bytes(tensors.read_bytes()[:-7])
    with pytest.raises(TaskmaskError, match=rf"{tensors.name}: .*truncated or corrupt"):
        checkpoint.load(tmp_path)


def test_a_flipped_byte_is_refused(tmp_path: Path) -> None:
    checkpoint.save(tmp_path, _checkpoint())
    tensors = _tensor_file(tmp_path)
    data = bytearray(tensors.read_bytes())
    data[-1] ^= 0xFF
    tensors.write_bytes(bytes(data))
    with pytest.raises(TaskmaskError, match="SHA-256 differs"):
        checkpoint.load(tmp_path)


def test_a_truncated_index_is_refused(tmp_path: Path) -> None:
    checkpoint.save(tmp_path, _checkpoint())
    index = tmp_path / INDEX_FILE
    index.write_text(index.read_text()[:40])
    with pytest.raises(TaskmaskError, match=r"checkpoint\.json: not readable JSON"):
        checkpoint.load(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format_version": 99}, "format version 99"),
        ({"tensor_file": "../elsewhere.safetensors"}, "not a taskmask checkpoint index"),
        ({"sha256": None}, "not a taskmask checkpoint index"),
    ],
)
def test_a_wrong_index_is_refused(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    checkpoint.save(tmp_path, _checkpoint())
    index = tmp_path / INDEX_FILE
    index.write_text(json.dumps({**json.loads(index.read_text()), **change}))
    with pytest.raises(TaskmaskError, match=message):
        checkpoint.load(tmp_path)


def test_a_missing_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(TaskmaskError, match="no checkpoint to resume from"):
        checkpoint.load(tmp_path)
    checkpoint.save(tmp_path, _checkpoint())
    _tensor_file(tmp_path).unlink()
    with pytest.raises(TaskmaskError, match="not found; the checkpoint is incomplete"):
        checkpoint.load(tmp_path)


@pytest.mark.parametrize("zipped", [True, False])
@pytest.mark.parametrize("where", ["tensors", "index"])
def test_a_torch_save_file_is_refused_without_unpickling(
    tmp_path: Path, zipped: bool, where: str
) -> None:
    """A torch.save'd checkpoint holding a pickled object is never unpickled."""
    marker = tmp_path / "marker"
    checkpoint.save(tmp_path, _checkpoint())
    target = _tensor_file(tmp_path) if where == "tensors" else tmp_path / INDEX_FILE
    payload = {"model.w": torch.zeros(2), "epoch": 1, "evil": _Trap(marker)}
    torch.save(payload, target, _use_new_zipfile_serialization=zipped)
    with pytest.raises(TaskmaskError, match=r"a pickle \(torch\.save\) file.*never unpickles"):
        checkpoint.load(tmp_path)
    assert not marker.exists()


def test_the_trainer_refuses_a_damaged_checkpoint(tmp_path: Path) -> None:
    config = TrainConfig(epochs=1, batch_size=32, progress=False, checkpoint_dir=tmp_path)
    Trainer(config).fit(model(), problem())
    tensors = _tensor_file(tmp_path)
    tensors.write_bytes(tensors.read_bytes()[:100])
    with pytest.raises(TaskmaskError, match="truncated or corrupt"):
        Trainer(config.model_copy(update={"epochs": 2})).fit(model(), problem(), resume=True)


def test_a_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    config = TrainConfig(epochs=1, batch_size=32, progress=False, checkpoint_dir=tmp_path)
    Trainer(config).fit(model(), problem())
    wider = MultiTaskModel(MLPTrunk(4, MLPConfig(hidden=(16,))), TASKS, (4,))
    with pytest.raises(TaskmaskError, match="does not fit this model"):
        Trainer(config).fit(wider, problem(), resume=True)


def test_the_checkpoint_holds_what_resuming_needs(tmp_path: Path) -> None:
    config = TrainConfig(
        epochs=2, batch_size=32, progress=False, checkpoint_dir=tmp_path, weighting="uncertainty"
    )
    Trainer(config).fit(model(), problem())
    saved = checkpoint.load(tmp_path)
    prefixes = {key.split(".")[0] for key in saved.tensors}
    assert prefixes == {"model", "weighting", "optimizer", "rng"}
    assert "weighting.log_variance" in saved.tensors
    assert {"rng.shuffle", "rng.torch.0"} <= saved.tensors.keys()
    assert saved.meta["epoch"] == 2 and len(saved.meta["history"]) == 2
    assert saved.meta["config"]["weighting"] == "uncertainty"
    assert saved.meta["optimizer"]["param_groups"][0]["lr"] == config.lr


# Model files (taskmask.persistence) meet the same standard.


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return save_model(model(), tmp_path / "model")


def test_a_truncated_model_file_is_refused(model_dir: Path) -> None:
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-5])
    with pytest.raises(TaskmaskError, match=r"model\.safetensors: not a readable safetensors"):
        load_model(model_dir)


def test_a_truncated_model_description_is_refused(model_dir: Path) -> None:
    meta = model_dir / "model.json"
    meta.write_text(meta.read_text()[:30])
    with pytest.raises(TaskmaskError, match=r"model\.json: not readable JSON"):
        load_model(model_dir)


def test_a_pickled_model_file_is_refused_without_unpickling(model_dir: Path) -> None:
    marker = model_dir / "marker"
    torch.save({"trunk.w": torch.zeros(2), "evil": _Trap(marker)}, model_dir / "model.safetensors")
    with pytest.raises(TaskmaskError, match=r"model\.safetensors: not a readable safetensors"):
        load_model(model_dir)
    assert not marker.exists()


def test_a_many_task_history_is_stored_compactly_and_read_back_bit_exact(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    columns = [f"{p}/task_{t}/{m}" for p in ("train", "val") for t in range(617) for m in "abcd"]
    values = torch.rand(3, len(columns), generator=generator, dtype=torch.float64).tolist()
    rows = [
        {"epoch": float(e), **dict(zip(columns, values[e - 1], strict=True))} for e in (1, 2, 3)
    ]
    rows[1][columns[5]] = math.nan
    del rows[2][columns[7]]  # a row may lack a column: it comes back without it
    rows[2]["late"] = 1e-300  # and a later row may add one
    checkpoint.save(tmp_path, Checkpoint({"model.w": torch.ones(2)}, {"epoch": 3, "history": rows}))
    index = (tmp_path / INDEX_FILE).read_text()
    assert len(index) < 40 * (len(columns) + 2)  # one name per column, no value per epoch
    loaded = checkpoint.load(tmp_path)
    assert set(loaded.tensors) == {"model.w"}
    back = loaded.meta["history"]
    assert [list(r) for r in back] == [list(r) for r in rows[:2]] + [list(rows[2])]
    for got, want in zip(back, rows, strict=True):
        assert got.keys() == want.keys()
        assert all(got[k] == want[k] or (math.isnan(got[k]) and math.isnan(want[k])) for k in want)
        assert all(type(v) is float for v in got.values())


def test_history_columns_that_do_not_match_the_tensors_are_refused(tmp_path: Path) -> None:
    checkpoint.save(tmp_path, _checkpoint())
    index = tmp_path / INDEX_FILE
    document = json.loads(index.read_text())
    index.write_text(json.dumps({**document, "history_columns": ["train/loss"]}))
    with pytest.raises(TaskmaskError, match=r"checkpoint\.json: history_columns does not match"):
        checkpoint.load(tmp_path)
