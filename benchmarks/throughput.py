"""Training throughput: taskmask's `Trainer` against a hand-written PyTorch loop, and the share of
a training step that the masked loss takes on a wide multi-task workload.

    python benchmarks/throughput.py                  # full run, a few minutes on 2 CPU cores
    python benchmarks/throughput.py --smoke          # seconds; run by tests/test_benchmarks.py
    python benchmarks/throughput.py --json out.json  # also write every figure as JSON

1. Seed 000: 97,000 rows x 2 features, one multilabel task (3 labels, ~2 % missing), an MLP
   2-10-40-30-3, batch 5,000, Adam lr 1e-2. taskmask's samples/s against the same network as a
   plain ``nn.Sequential`` trained by a minimal loop (shuffled index slicing, masked BCE as
   ``torch.where`` on the elementwise loss, sum / count). Target: taskmask / hand >= 1.0x.
2. Wide: 1,000,000 rows x 100 features, 50 binary tasks with 50 % of labels missing, MLP
   (512, 256), one head per task, batch 1,024. Time of one training step (forward, loss, backward,
   Adam) with taskmask's masked loss against the plain unmasked loss, interleaved over a fixed
   number of steps. Target: the masked loss costs <= 5 % of the step. Also the Trainer's samples/s
   on a slice, and the peak resident memory of the process.

Timings take the best of several interleaved repeats: the minimum is the run least disturbed by
whatever else shares the machine. ``--threads`` (default 1) fixes ``torch.set_num_threads``: on a
shared 2-core machine two OpenMP threads stall each other whenever a core is busy elsewhere.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import taskmask
from taskmask import (
    EncodedLabels,
    MLPConfig,
    MLPTrunk,
    MultiTaskData,
    MultiTaskModel,
    Task,
    TrainConfig,
    Trainer,
    make_data,
)
from taskmask.training import BatchLoss
from taskmask.weighting import Weighting, make_weighting

Step = Callable[[int], None]


@dataclass(frozen=True)
class Sizes:
    """Workload sizes; `SMOKE` shrinks every one of them to run in seconds."""

    seed_rows: int = 97_000
    seed_batch: int = 5_000
    seed_epochs: int = 5
    repeats: int = 5
    wide_rows: int = 1_000_000
    wide_features: int = 100
    wide_tasks: int = 50
    wide_hidden: tuple[int, ...] = (512, 256)
    wide_batch: int = 1_024
    wide_steps: int = 200
    wide_block: int = 20
    wide_warmup: int = 10
    wide_fit_rows: int = 100_000


FULL = Sizes()
SMOKE = Sizes(
    seed_rows=3_000,
    seed_batch=500,
    seed_epochs=1,
    repeats=2,
    wide_rows=4_000,
    wide_features=8,
    wide_tasks=4,
    wide_hidden=(16, 8),
    wide_batch=64,
    wide_steps=4,
    wide_block=2,
    wide_warmup=1,
    wide_fit_rows=1_000,
)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (``ru_maxrss`` is KiB on Linux)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / (1024 * 1024) if sys.platform == "darwin" else kib / 1024


@dataclass
class Clock:
    """Wall and process-CPU seconds per repeat. With one torch thread, CPU time is the work done,
    whatever else the machine runs; wall time is what a user waits. Both keep their best."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def time(self, fn: Callable[[], object]) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        self.wall.append(time.perf_counter() - wall)
        self.cpu.append(time.process_time() - cpu)

    def best(self, clock: str) -> float:
        return min(self.wall if clock == "wall" else self.cpu)


# --- seed 000 -----------------------------------------------------------------------------------


def seed000_data(n_rows: int) -> tuple[MultiTaskData, Task]:
    """Two features, three labels (a half-plane, a quadrant rule, a disc), ~2 % marked missing."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n_rows, 2, generator=generator)  # (N, 2)
    labels = torch.stack(
        [x[:, 0] > 0, x[:, 0] * x[:, 1] > 0, (x**2).sum(1) < 1.4], dim=1
    ).double()  # (N, 3)
    missing = torch.rand(labels.shape, generator=generator) < 0.02
    labels[missing] = math.nan
    task = Task(name="seed000", kind="multilabel", labels=("a", "b", "c"))
    return make_data(x.numpy(), {task.name: labels.numpy()}, [task]), task


def seed000_models(task: Task) -> tuple[MultiTaskModel, nn.Sequential]:
    """taskmask's model and a plain ``nn.Sequential`` with the same layers and weights."""
    torch.manual_seed(0)
    model = MultiTaskModel(MLPTrunk(2, MLPConfig(hidden=(10, 40, 30))), [task], (2,))
    linears = [m for m in model.trunk.modules() if isinstance(m, nn.Linear)]
    layers: list[nn.Module] = []
    for linear in linears:
        layers += [copy.deepcopy(linear), nn.ReLU()]
    hand = nn.Sequential(*layers, copy.deepcopy(model.heads[task.name]))
    return model, hand


def fit_hand(
    model: nn.Module, data: MultiTaskData, task: Task, *, epochs: int, batch_size: int, lr: float
) -> None:
    """The minimal loop: shuffled index slicing, masked BCE as where / sum / count, Adam."""
    inputs, enc = data.inputs, data.labels[task.name]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(inputs), batch_size):
            index = order[start : start + batch_size]
            observed = enc.observed[index]
            loss = F.binary_cross_entropy_with_logits(
                model(inputs[index]), enc.target[index], reduction="none"
            )
            loss = torch.where(observed, loss, 0.0).sum() / observed.sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def fit_taskmask(
    model: MultiTaskModel,
    data: MultiTaskData,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    **kw: Any,
) -> None:
    config = TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, progress=False, device="cpu", **kw
    )
    Trainer(config).fit(model, data)


def bench_seed000(sizes: Sizes) -> dict[str, float]:
    data, task = seed000_data(sizes.seed_rows)
    model, hand = seed000_models(task)
    common = {"batch_size": sizes.seed_batch, "lr": 1e-2}
    runs: dict[str, Callable[[int], None]] = {
        "hand": lambda e: fit_hand(hand, data, task, epochs=e, **common),
        "taskmask": lambda e: fit_taskmask(model, data, epochs=e, train_metrics=False, **common),
        "taskmask_train_metrics": lambda e: fit_taskmask(model, data, epochs=e, **common),
    }
    for run in runs.values():
        run(1)  # warm-up epoch
    clocks = {name: Clock() for name in runs}
    for _ in range(sizes.repeats):
        for name, run in runs.items():
            clocks[name].time(partial(run, sizes.seed_epochs))
    n_samples = sizes.seed_rows * sizes.seed_epochs
    result = {}
    for clock, unit in (("wall", "s"), ("cpu", "cpu_s")):
        rate = {name: n_samples / c.best(clock) for name, c in clocks.items()}
        suffix = "" if clock == "wall" else "_cpu"
        result |= {f"{name}_samples_per_{unit}": r for name, r in rate.items()}
        result[f"ratio_taskmask_over_hand{suffix}"] = rate["taskmask"] / rate["hand"]
        result[f"ratio_train_metrics_over_hand{suffix}"] = (
            rate["taskmask_train_metrics"] / rate["hand"]
        )
    return result


# --- wide workload ------------------------------------------------------------------------------


def wide_data(sizes: Sizes) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs ``(N, F)``, 0/1 targets ``(N, T)`` from random linear rules, observed ``(N, T)``."""
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(sizes.wide_rows, sizes.wide_features, generator=generator)
    rules = torch.randn(sizes.wide_features, sizes.wide_tasks, generator=generator)
    target = (inputs @ rules > 0).float()  # (N, T)
    observed = torch.rand(target.shape, generator=generator) < 0.5  # (N, T)
    return inputs, target, observed


TASK = Task(name="t", kind="binary")  # `task_loss` reads only the kind: all tasks are alike


def wide_tasks(n_tasks: int) -> list[Task]:
    return [TASK.model_copy(update={"name": f"t{i:02d}"}) for i in range(n_tasks)]


def wide_model(sizes: Sizes, tasks: Sequence[Task]) -> MultiTaskModel:
    torch.manual_seed(0)
    trunk = MLPTrunk(sizes.wide_features, MLPConfig(hidden=sizes.wide_hidden))
    return MultiTaskModel(trunk, tasks, (sizes.wide_features,))


def per_task(target: torch.Tensor, observed: torch.Tensor) -> dict[str, EncodedLabels]:
    """Columns as the contiguous ``(N, 1)`` tensors that `MultiTaskData` holds per task."""
    return {
        f"t{i:02d}": EncodedLabels(
            target[:, i : i + 1].contiguous(), observed[:, i : i + 1].contiguous()
        )
        for i in range(target.shape[1])
    }


@dataclass(frozen=True)
class WideBatch:
    """One batch: the ``(B, T)`` label blocks and the same batch packed as the Trainer holds it."""

    inputs: torch.Tensor  # (B, F)
    target: torch.Tensor  # (B, T)
    observed: torch.Tensor  # (B, T)
    packed: MultiTaskData  # labels packed by `BatchLoss.pack`


Outputs = dict[str, torch.Tensor]
WideLoss = Callable[[Outputs, WideBatch, Weighting, BatchLoss], torch.Tensor]


def masked_loss(
    outputs: Outputs, batch: WideBatch, weighting: Weighting, plan: BatchLoss
) -> torch.Tensor:
    """What `Trainer` does: per-task (sum, count) by `BatchLoss`, mean over observed, weighting."""
    sums, counts = plan(outputs, batch.packed)
    return weighting(sums / counts.clamp(min=1), counts)


def plain_loss(
    outputs: Outputs, batch: WideBatch, weighting: Weighting, plan: BatchLoss
) -> torch.Tensor:
    """Unmasked BCE, mean over all entries of the ``(B, T)`` logits."""
    logits = torch.cat([outputs[t.name] for t in plan.tasks], dim=1)  # (B, T)
    return F.binary_cross_entropy_with_logits(logits, batch.target)


WIDE_LOSSES: dict[str, WideLoss] = {"masked": masked_loss, "plain": plain_loss}


def wide_plan(tasks: Sequence[Task]) -> BatchLoss:
    pos_weights = {t.name: None for t in tasks}
    return BatchLoss(tasks, loss_fns={}, pos_weights=pos_weights, device=torch.device("cpu"))


def step_fn(model: MultiTaskModel, batches: Sequence[WideBatch], loss: WideLoss) -> Step:
    """One training step (forward, loss, backward, Adam) on ``batches[i]``, own model copy."""
    model = copy.deepcopy(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    weighting = make_weighting("static", model.tasks)
    plan = wide_plan(model.tasks)

    def step(i: int) -> None:
        batch = batches[i % len(batches)]
        total = loss(model(batch.inputs), batch, weighting, plan)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    return step


def run_steps(step: Step, indices: range) -> None:
    for i in indices:
        step(i)


def time_steps(steps: dict[str, Step], sizes: Sizes) -> dict[str, Clock]:
    """Each loss's total over ``wide_steps`` steps, run in interleaved blocks (rotating which goes
    first) so that drift hits every loss alike; ``repeats`` times."""
    names = list(steps)
    for name in names:
        for i in range(sizes.wide_warmup):
            steps[name](i)
    n_blocks = max(1, sizes.wide_steps // sizes.wide_block)
    clocks = {name: Clock() for name in names}
    for _ in range(sizes.repeats):
        total = {name: Clock() for name in names}
        for block in range(n_blocks):
            shift = block % len(names)
            steps_in_block = range(block * sizes.wide_block, (block + 1) * sizes.wide_block)
            for name in names[shift:] + names[:shift]:
                total[name].time(partial(run_steps, steps[name], steps_in_block))
        for name in names:
            clocks[name].wall.append(sum(total[name].wall) / (n_blocks * sizes.wide_block))
            clocks[name].cpu.append(sum(total[name].cpu) / (n_blocks * sizes.wide_block))
    return clocks


def wide_batches(
    inputs: torch.Tensor, target: torch.Tensor, observed: torch.Tensor, sizes: Sizes
) -> list[WideBatch]:
    """The batches the step loop cycles through, gathered once from a shuffled order."""
    generator = torch.Generator().manual_seed(2)
    order = torch.randperm(len(inputs), generator=generator)
    plan = wide_plan(wide_tasks(target.shape[1]))
    n_batches = min(sizes.wide_steps, len(inputs) // sizes.wide_batch)
    batches = []
    for b in range(n_batches):
        index = order[b * sizes.wide_batch : (b + 1) * sizes.wide_batch]
        t, o = target[index], observed[index]
        packed = plan.pack(MultiTaskData(inputs[index], per_task(t, o)))
        batches.append(WideBatch(inputs[index], t, o, packed))
    return batches


def wide_trainer_clock(
    model: MultiTaskModel,
    inputs: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    sizes: Sizes,
) -> Clock:
    """`Trainer.fit`, one epoch over the first ``wide_fit_rows`` rows, ``repeats`` times."""
    n = sizes.wide_fit_rows
    data = MultiTaskData(inputs[:n], per_task(target[:n], observed[:n]))
    clock = Clock()
    for _ in range(sizes.repeats):
        fresh = copy.deepcopy(model)
        settings = {"epochs": 1, "batch_size": sizes.wide_batch, "lr": 1e-3}
        clock.time(partial(fit_taskmask, fresh, data, train_metrics=False, **settings))
    return clock


def bench_wide(sizes: Sizes) -> dict[str, float]:
    inputs, target, observed = wide_data(sizes)
    data_mib = sum(t.nbytes for t in (inputs, target, observed)) / 2**20
    model = wide_model(sizes, wide_tasks(sizes.wide_tasks))
    batches = wide_batches(inputs, target, observed, sizes)
    steps = {name: step_fn(model, batches, loss) for name, loss in WIDE_LOSSES.items()}
    step_clocks = time_steps(steps, sizes)
    del batches, steps
    fit_clock = wide_trainer_clock(model, inputs, target, observed, sizes)
    result = {"data_mib": data_mib}
    for clock in ("wall", "cpu"):
        suffix = "" if clock == "wall" else "_cpu"
        step = {name: c.best(clock) for name, c in step_clocks.items()}
        plain = step["plain"]
        result |= {f"step_ms_{name}{suffix}": 1e3 * s for name, s in step.items()}
        result |= {
            f"masked_overhead_pct{suffix}": 100 * (step["masked"] - plain) / plain,
            "trainer_samples_per_" + ("s" if clock == "wall" else "cpu_s"): (
                sizes.wide_fit_rows / fit_clock.best(clock)
            ),
            f"trainer_over_bare_step{suffix}": (
                step["masked"] * sizes.wide_fit_rows / sizes.wide_batch / fit_clock.best(clock)
            ),
        }
    return result


# --- report -------------------------------------------------------------------------------------


def environment(threads: int) -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "taskmask": taskmask.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "load_average_1min": os.getloadavg()[0],
    }


def print_report(results: dict[str, Any], sizes: Sizes) -> None:
    env, seed, wide = results["environment"], results["seed000"], results["wide"]
    hidden = "-".join(map(str, sizes.wide_hidden))
    print(
        f"torch {env['torch']}, taskmask {env['taskmask']}, {env['cpu_count']} CPUs, "
        f"torch.set_num_threads({env['threads']}), load average {env['load_average_1min']:.1f}"
        f" -> {results['load_average_end']:.1f}, {results['sizes']} sizes"
    )
    print(
        f"seed 000 ({sizes.seed_rows:,} x 2, multilabel 3, MLP 2-10-40-30-3, batch "
        f"{sizes.seed_batch:,}; best of {sizes.repeats} x {sizes.seed_epochs} epochs, interleaved)"
    )
    print(f"  {'':<24}{'samples/s':>12}{'samples/cpu-s':>15}")
    for name in ("hand", "taskmask", "taskmask_train_metrics"):
        wall, cpu = seed[f"{name}_samples_per_s"], seed[f"{name}_samples_per_cpu_s"]
        print(f"  {name:<24}{wall:>12,.0f}{cpu:>15,.0f}")
    for key, label in (("taskmask", "taskmask / hand"), ("train_metrics", "train_metrics / hand")):
        wall, cpu = seed[f"ratio_{key}_over_hand"], seed[f"ratio_{key}_over_hand_cpu"]
        print(
            f"  {label:<24}{wall:>11.2f}x{cpu:>14.2f}x"
            + ("  (target >= 1.0x)" * (key == "taskmask"))
        )
    print(
        f"wide ({sizes.wide_rows:,} x {sizes.wide_features}, {sizes.wide_tasks} binary tasks, "
        f"50 % missing, MLP {hidden}, batch {sizes.wide_batch:,}; best of {sizes.repeats} x "
        f"{sizes.wide_steps} steps, interleaved)"
    )
    print(f"  {'step with loss':<24}{'ms':>12}{'cpu-ms':>15}")
    for name in WIDE_LOSSES:
        print(f"  {name:<24}{wide[f'step_ms_{name}']:>12.2f}{wide[f'step_ms_{name}_cpu']:>15.2f}")
    key = "masked_overhead_pct"
    overhead = f"{wide[key]:>+11.1f}%{wide[key + '_cpu']:>+14.1f}%"
    print(f"  {'masked vs plain':<24}{overhead}  (target <= 5 %)")
    print(
        f"  {'Trainer.fit samples/s':<24}{wide['trainer_samples_per_s']:>12,.0f}"
        f"{wide['trainer_samples_per_cpu_s']:>15,.0f}  ({sizes.wide_fit_rows:,} rows, 1 epoch)"
    )
    print(
        f"  {'Trainer / bare step':<24}{wide['trainer_over_bare_step']:>11.2f}x"
        f"{wide['trainer_over_bare_step_cpu']:>14.2f}x"
    )
    print(
        f"peak RSS {results['peak_rss_mib']:,.0f} MiB (after imports: "
        f"{results['rss_before_mib']:,.0f}, after seed 000: {seed['peak_rss_mib']:,.0f}; "
        f"wide inputs + labels: {wide['data_mib']:,.1f} MiB)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="taskmask training throughput benchmark")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, runs in seconds")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = SMOKE if args.smoke else FULL
    results: dict[str, Any] = {"environment": environment(torch.get_num_threads())}
    results["rss_before_mib"] = peak_rss_mib()  # the interpreter, torch, sklearn, pandas
    results["seed000"] = {**bench_seed000(sizes), "peak_rss_mib": peak_rss_mib()}
    results["wide"] = bench_wide(sizes)
    results["peak_rss_mib"] = peak_rss_mib()
    results["load_average_end"] = os.getloadavg()[0]
    results["sizes"] = "smoke" if args.smoke else "full"
    print_report(results, sizes)
    if args.json is not None:
        args.json.write_text(json.dumps({**results, "config": asdict(sizes)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
