"""Model directories as untrusted input: the weights' SHA-256 is checked, layer sizes are
checked against the safetensors header before anything is allocated, a pickle is named, and
a write killed half-way leaves nothing behind for good."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli import run_cli

from taskmask.errors import TaskmaskError
from taskmask.model import MLPConfig, MLPTrunk, MultiTaskModel, raw_outputs
from taskmask.persistence import META_FILE, WEIGHTS_FILE, load_model, save_model
from taskmask.tasks import Task

TASKS = (Task(name="tox", kind="binary"), Task(name="age", kind="regression"))


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = MultiTaskModel(MLPTrunk(3, MLPConfig(hidden=(8,))), TASKS, (3,))
    return save_model(model, tmp_path / "model")


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # inside the last tensor's data, past the header
    path.write_bytes(bytes(data))


def _meta(saved: Path) -> dict:
    return json.loads((saved / META_FILE).read_text())


def test_model_json_holds_the_sha256_of_the_weights(saved: Path) -> None:
    import hashlib

    digest = hashlib.sha256((saved / WEIGHTS_FILE).read_bytes()).hexdigest()
    assert _meta(saved)["weights_sha256"] == digest


def test_one_flipped_byte_is_refused_unless_verify_is_off(saved: Path) -> None:
    before = raw_outputs(load_model(saved), torch.ones(2, 3))
    _flip_last_byte(saved / WEIGHTS_FILE)
    with pytest.raises(TaskmaskError, match=f"{saved / WEIGHTS_FILE}: its SHA-256 differs"):
        load_model(saved)
    after = raw_outputs(load_model(saved, verify=False), torch.ones(2, 3))
    assert any(not torch.equal(before[name], after[name]) for name in before)


def test_a_model_saved_without_a_checksum_still_loads(saved: Path) -> None:
    meta = _meta(saved)
    del meta["weights_sha256"]  # as taskmask 0.1.0 wrote it
    (saved / META_FILE).write_text(json.dumps(meta))
    assert load_model(saved).task_names == ("tox", "age")


def test_a_checksum_that_is_no_sha256_is_refused(saved: Path) -> None:
    meta = _meta(saved) | {"weights_sha256": "abc"}
    (saved / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(TaskmaskError, match="weights_sha256"):
        load_model(saved)


def test_the_cli_refuses_altered_weights_and_no_verify_accepts_them(
    saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(saved, run)
    data = "data: {train: d.csv, features: [a, b, c]}\ntasks: [{name: tox, kind: binary}, "
    (run / "config.yaml").write_text(data + "{name: age, kind: regression}]\n")
    (tmp_path / "d.csv").write_text("a,b,c,tox,age\n1,2,3,1,0.5\n0,1,0,0,1.5\n")
    _flip_last_byte(run / WEIGHTS_FILE)
    code, out, err = run_cli(capsys, "evaluate", run, "--data", tmp_path / "d.csv")
    assert (code, out) == (2, "") and f"{run / WEIGHTS_FILE}: its SHA-256 differs" in err
    assert "--no-verify" in err
    code, out, err = run_cli(capsys, "evaluate", run, "--data", tmp_path / "d.csv", "--no-verify")
    assert (code, err) == (0, "") and "tox" in out


def test_huge_layer_sizes_are_refused_before_anything_is_allocated(saved: Path) -> None:
    meta = _meta(saved)
    meta["trunk"]["hidden"] = [200_000, 200_000]  # 4e10 weights: 160 GB of float32
    (saved / META_FILE).write_text(json.dumps(meta))
    started = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(TaskmaskError) as info:
        load_model(saved)
    assert time.perf_counter() - started < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200_000  # KiB
    message = str(info.value)
    assert message.startswith(f"{saved / WEIGHTS_FILE}: tensor 'trunk.")
    assert "has shape (8, 3)" in message and "needs (200000, 3)" in message


def test_a_wrong_input_shape_names_the_tensor_and_both_shapes(saved: Path) -> None:
    meta = _meta(saved) | {"input_shape": [5]}
    (saved / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(TaskmaskError, match=r"tensor 'input_mean' has shape \(1, 3\); .*\(1, 5\)"):
        load_model(saved)


def test_a_pickled_weights_file_is_named_a_pickle(saved: Path) -> None:
    torch.save({"w": torch.zeros(2)}, saved / WEIGHTS_FILE)
    with pytest.raises(
        TaskmaskError, match=r"model\.safetensors: .*it is a pickle \(torch\.save\)"
    ):
        load_model(saved)


def test_a_model_directory_with_only_a_pickle_says_so(saved: Path) -> None:
    (saved / WEIGHTS_FILE).unlink()
    torch.save({"w": torch.zeros(2)}, saved / "model.pt")
    with pytest.raises(TaskmaskError, match=r"model\.safetensors: not found; model\.pt may be a"):
        load_model(saved)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_write_killed_half_way_is_cleaned_up_by_the_next(saved: Path) -> None:
    pid = _dead_pid()
    stray = saved.parent / f".model.tmp-{pid}-x1y2"
    shutil.copytree(saved, stray)  # a full hidden copy, as kill -9 during the rename leaves
    model = load_model(saved)
    save_model(model, saved)
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model"]


def test_a_write_killed_between_its_renames_gets_its_old_copy_back(saved: Path) -> None:
    old = saved.parent / f".model.old-{_dead_pid()}"
    saved.rename(old)  # the writer moved the model aside, then died
    other = saved.parent / "other"
    save_model(load_model(old), other)
    assert not saved.exists()  # only a write of `model` itself looks at its leftovers
    save_model(load_model(other), saved)
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model", "other"]


def test_a_live_writers_temporary_directory_is_left_alone(saved: Path) -> None:
    live = saved.parent / f".model.tmp-{__import__('os').getppid()}-abcd"
    live.mkdir()
    save_model(load_model(saved), saved)
    assert live.is_dir()


JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.lists(st.integers(-3, 10**7), max_size=3),
    st.dictionaries(st.sampled_from(["type", "hidden", "kind"]), st.integers(0, 9), max_size=2),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in a JSON document."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@settings(max_examples=50, deadline=None, derandomize=True)
@given(data=st.data())
def test_any_edit_of_model_json_loads_or_names_the_file(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as name:
        torch.manual_seed(0)
        model = MultiTaskModel(MLPTrunk(3, MLPConfig(hidden=(8,))), TASKS, (3,))
        saved = save_model(model, Path(name) / "model")
        meta = _meta(saved)
        for _ in range(data.draw(st.integers(1, 3))):
            path = data.draw(st.sampled_from(_paths(meta)))
            node = meta
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = data.draw(JSON_VALUES)
        (saved / META_FILE).write_text(json.dumps(meta))
        try:
            load_model(saved)
        except TaskmaskError as error:
            assert str(error).startswith((str(saved / META_FILE), str(saved / WEIGHTS_FILE)))
