"""Several processes train as one: each rank's pieces of a global batch make up the batch one
process would take; per-task losses are global means; and under torchrun (2 CPU processes,
gloo) losses, metrics and weights match a single process on the same global batches. Devices:
bf16 autocast runs, and data placement never hard-codes a device."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from filelock import FileLock  # a dependency of torch
from safetensors.torch import load_file
from test_cli import config_dict, make_table
from training_script import problem, train

import taskmask._world as distributed
from taskmask._world import World
from taskmask.app.cli import main
from taskmask.data._batches import InMemoryBatches, fits_on_device, to_device
from taskmask.errors import TaskmaskError
from taskmask.training import TrainConfig, Trainer, checkpoint

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).parents[1] / "training_script.py"
CPU = torch.device("cpu")
# 161 training rows after the split: the last global batch of 16 has one row, so rank 1's
# piece of it is empty.
API = {"rows": 201}
API_CONFIG = {
    "epochs": 3,
    "batch_size": 16,
    "lr": 1e-2,
    "progress": False,
    "device": "cpu",
    "validation_split": 0.2,
}
API_RUNS: dict[str, dict[str, Any]] = {
    "static": {"conflict_batches": 2, "early_stopping": {"patience": 5}},
    "uncertainty": {},
    "famo": {"train_metrics": False},
    "dwa": {"train_metrics": False},
    "gradnorm": {"train_metrics": False},
}
EXACT_ACROSS = ("static", "uncertainty", "famo", "dwa")  # weightings that match one process
CLI_TRAINING = {"epochs": 3, "batch_size": 16, "lr": 0.01, "seed": 0, "weighting": "famo"}


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_pieces_split_rows_in_order_and_nearly_evenly(world_size: int) -> None:
    for n in range(0, 40):
        pieces = [World(r, world_size, CPU).piece(n) for r in range(world_size)]
        rows = [i for p in pieces for i in range(n)[p]]
        assert rows == list(range(n))
        sizes = [p.stop - p.start for p in pieces]
        assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("world_size", [2, 3])
def test_the_ranks_pieces_make_up_the_single_process_batches(world_size: int) -> None:
    data = problem(37)
    single = InMemoryBatches(data, 8, World(0, 1, CPU))
    ranks = [InMemoryBatches(data, 8, World(r, world_size, CPU)) for r in range(world_size)]
    batches = [list(b.epoch(torch.Generator().manual_seed(5))) for b in [single, *ranks]]
    old = list(data.batches(8, generator=torch.Generator().manual_seed(5)))
    assert len(old) == len(batches[0]) == 5
    for i, whole in enumerate(batches[0]):
        parts = [rank_batches[i] for rank_batches in batches[1:]]
        assert torch.equal(torch.cat([p.inputs for p in parts]), whole.inputs)
        assert torch.equal(whole.inputs, old[i].inputs)
        for name, enc in whole.labels.items():
            assert torch.equal(torch.cat([p.labels[name].observed for p in parts]), enc.observed)


def test_global_losses_are_the_global_means_with_the_gradients_ddp_averages() -> None:
    local = torch.tensor([1.0, 2.0, 0.0], requires_grad=True)
    sums, counts = torch.tensor([3.0, 8.0, 0.0]), torch.tensor([2.0, 4.0, 0.0])
    for world_size in (1, 2, 4):
        world = World(0, world_size, CPU)
        global_sums = local.detach() if world_size == 1 else sums
        losses = world.global_losses(local, global_sums, counts)
        assert torch.equal(losses.detach(), global_sums / counts.clamp(min=1))
        (grad,) = torch.autograd.grad(losses.sum(), local)
        # averaged over the ranks: 1 / count, the single-process gradient of sum / count
        assert torch.equal(grad, world_size / counts.clamp(min=1))


def test_one_process_collectives_are_the_identity() -> None:
    world = World(0, 1, CPU)
    tensor = torch.arange(6.0).reshape(3, 2)
    assert world.sum(tensor) is tensor and world.gather_rows(tensor) is tensor
    assert world.agree(3) and world.piece(7) == slice(0, 7)
    net = torch.nn.Linear(2, 2)
    assert world.wrap(net) is net
    assert distributed.setup("cpu") == World(0, 1, CPU)  # no WORLD_SIZE here


def test_devices_are_resolved_not_hard_coded(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert distributed.resolve_device("auto").type == expected
    assert distributed.resolve_device("cpu") == CPU
    if not torch.cuda.is_available():
        with pytest.raises(TaskmaskError, match="'cuda': CUDA is not available"):
            distributed.resolve_device("cuda")
    data = problem(10)
    assert fits_on_device(data, CPU)
    assert to_device(data, CPU) is data
    monkeypatch.setenv("RANK", "3")
    assert distributed.rank() == 3 and not distributed.is_main()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_through_pinned_memory_equal_batches_on_the_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data, device = problem(100), torch.device("cuda", torch.cuda.current_device())
    world = World(0, 1, device)
    resident = list(InMemoryBatches(data, 16, world).epoch(torch.Generator().manual_seed(0)))
    monkeypatch.setattr(distributed, "DEVICE_SHARE", 0.0)  # force the data to stay on the host
    streamed = InMemoryBatches(data, 16, world)
    assert streamed.data.inputs.device == CPU
    for a, b in zip(resident, streamed.epoch(torch.Generator().manual_seed(0)), strict=True):
        assert b.inputs.device == device and torch.equal(a.inputs, b.inputs)


class _AutocastProbe(torch.nn.Module):
    """A trunk that records whether autocast was on and what dtype its output had."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 8)
        self.seen: set[tuple[bool, torch.dtype]] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.linear(x))
        self.seen.add((torch.is_autocast_enabled(x.device.type), out.dtype))
        return out


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_bf16_runs_the_forward_under_autocast(precision: str) -> None:
    from training_script import TASKS

    from taskmask.model import MultiTaskModel

    probe = _AutocastProbe()
    net = MultiTaskModel(probe, TASKS, (4,))
    probe.seen.clear()  # the model's construction probed the trunk's width
    config = TrainConfig(epochs=2, batch_size=32, progress=False, precision=precision)
    history = Trainer(config).fit(net, problem(), validation=problem(50, seed=1))
    bf16 = precision == "bf16"
    assert probe.seen == {(bf16, torch.bfloat16 if bf16 else torch.float32)}
    assert all(
        math.isfinite(row["train/loss"]) and math.isfinite(row["val/loss"]) for row in history
    )
    assert all(p.dtype == torch.float32 for p in net.parameters())


# Under torchrun: one launch of two processes runs every job; the tests compare with this one.


def _jobs(root: Path) -> list[dict[str, Any]]:
    cli = ["train", "--config", str(root / "run.yaml"), "--out", str(root / "cli"), "--quiet"]
    jobs: list[dict[str, Any]] = [{"cli": cli}]
    for name, changes in API_RUNS.items():
        config = {**API_CONFIG, "weighting": name, **changes}
        if name == "static":
            config["checkpoint_dir"] = str(root / "ckpt")
        jobs.append({"name": name, "out": str(root), "config": config, "options": API})
    resumable = {**API_CONFIG, "weighting": "famo", "checkpoint_dir": str(root / "famo-ckpt")}
    for name, epochs, resume in (("first", 2, False), ("resumed", 4, True), ("whole", 4, False)):
        config = {**resumable, "epochs": epochs}
        if name == "whole":
            config["checkpoint_dir"] = None
        options = {**API, "resume": resume}
        jobs.append({"name": name, "out": str(root), "config": config, "options": options})
    return jobs


@pytest.fixture(scope="module")
def torchrun(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the jobs in 2 CPU processes under torchrun, once per test session even when
    pytest-xdist spreads this module's tests over workers; returns the directory written."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the session's directory, above each worker's own
    root = shared / "torchrun"
    with FileLock(str(shared / "torchrun.lock")):
        if not (root / "done").exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            _launch(root)
            (root / "done").write_text("")
    return root


def _launch(root: Path) -> None:
    make_table(120).to_csv(root / "train.csv", index=False)
    (root / "run.yaml").write_text(yaml.safe_dump(config_dict(training=CLI_TRAINING)))
    (root / "jobs.json").write_text(json.dumps(_jobs(root)))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=2", str(SCRIPT), str(root / "jobs.json")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-4000:]


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5)


def _assert_histories_match(two: list[dict[str, float]], one: list[dict[str, float]]) -> None:
    assert len(two) == len(one)
    for row_two, row_one in zip(two, one, strict=True):
        assert row_two.keys() == row_one.keys()
        for key in row_one.keys() - {"seconds"}:
            assert _close(row_two[key], row_one[key]), (key, row_two[key], row_one[key])


def _assert_weights_match(two: dict[str, torch.Tensor], one: dict[str, torch.Tensor]) -> None:
    assert two.keys() == one.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.parametrize("name", EXACT_ACROSS)
def test_two_processes_match_one_on_the_same_global_batches(
    torchrun: Path, tmp_path: Path, name: str
) -> None:
    config = {**API_CONFIG, "weighting": name, **API_RUNS[name]}
    single, history = train(name, tmp_path, config, **API)
    two = json.loads((torchrun / f"{name}.json").read_text())
    _assert_histories_match(two, history)
    if API_RUNS[name].get("train_metrics", True):
        assert "train/c/accuracy" in two[0] and "val/b/roc_auc" in two[0]
    rank0 = load_file(torchrun / f"{name}-rank0.safetensors")
    _assert_weights_match(rank0, single.state_dict())
    rank1 = load_file(torchrun / f"{name}-rank1.safetensors")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # the ranks stay identical


def test_gradient_based_weightings_keep_the_ranks_identical(torchrun: Path) -> None:
    rank0 = load_file(torchrun / "gradnorm-rank0.safetensors")
    rank1 = load_file(torchrun / "gradnorm-rank1.safetensors")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    history = json.loads((torchrun / "gradnorm.json").read_text())
    assert all(math.isfinite(row["train/loss"]) for row in history)


def test_taskmask_train_under_torchrun_matches_one_process(torchrun: Path, tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_bytes((torchrun / "train.csv").read_bytes())
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config_dict(training=CLI_TRAINING)))
    one = tmp_path / "one"
    argv = ["train", "--config", str(tmp_path / "run.yaml"), "--out", str(one), "--quiet"]
    assert main(argv) == 0
    two = torchrun / "cli"
    assert not (torchrun / "cli.checkpoint").exists()  # removed once the run was written
    _assert_weights_match(
        load_file(two / "model.safetensors"), load_file(one / "model.safetensors")
    )
    history = [pd_rows(two / "history.csv"), pd_rows(one / "history.csv")]
    _assert_histories_match(*history)
    metrics_two = json.loads((two / "metrics.json").read_text())["validation"]
    metrics_one = json.loads((one / "metrics.json").read_text())["validation"]
    for task, values in metrics_one.items():
        for key, value in values.items():
            if isinstance(value, float):
                assert _close(metrics_two[task][key], value), (task, key)


def pd_rows(path: Path) -> list[dict[str, float]]:
    import pandas as pd

    return [{k: float(v) for k, v in row.items()} for row in pd.read_csv(path).to_dict("records")]


def test_only_rank_0_writes_and_its_checkpoint_resumes_on_one_process(
    torchrun: Path, tmp_path: Path
) -> None:
    assert not list(torchrun.glob("*.hanging"))
    saved = checkpoint.load(torchrun / "ckpt")
    assert saved.meta["world_size"] == 2 and saved.meta["epoch"] == 3
    assert {"rng.torch.0", "rng.torch.1"} <= saved.tensors.keys()
    config = {**API_CONFIG, **API_RUNS["static"], "epochs": 4}
    config["checkpoint_dir"] = str(torchrun / "ckpt")
    _, history = train("continued", tmp_path, config, resume=True, **API)
    assert len(history) == 4
    assert json.dumps(history[:3]) == (torchrun / "static.json").read_text()


def test_a_run_resumed_under_torchrun_ends_as_an_uninterrupted_one(torchrun: Path) -> None:
    for rank in (0, 1):
        resumed = load_file(torchrun / f"resumed-rank{rank}.safetensors")
        whole = load_file(torchrun / f"whole-rank{rank}.safetensors")
        assert all(torch.equal(resumed[k], whole[k]) for k in whole)


def test_the_benchmark_smoke_run_reports_a_ratio(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "distributed.py"), "--smoke"]
    run = subprocess.run(
        [*command, "--json", str(out)], capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, run.stderr[-4000:]
    results = json.loads(out.read_text())
    rates = results["samples_per_s"]
    assert set(rates) == {"1 process", "2 processes", "1 process, 2 threads"}
    assert all(math.isfinite(r) and r > 0 for r in rates.values())
    ratio = results["ratio_2_processes_over_1"]
    assert ratio == pytest.approx(rates["2 processes"] / rates["1 process"])
    per_cpu = results["samples_per_cpu_s"]
    assert per_cpu.keys() == rates.keys() and all(r > 0 for r in per_cpu.values())
    efficiency = per_cpu["2 processes"] / per_cpu["1 process"]
    assert results["cpu_efficiency_2_processes"] == pytest.approx(efficiency)
    assert "2 processes / 1 process" in run.stdout
