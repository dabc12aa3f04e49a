"""Many binary tasks: taskmask's training step against a hand loop with one ``Linear(256, T)``.

    python benchmarks/many_tasks.py            # full run, a few minutes on one thread
    python benchmarks/many_tasks.py --smoke    # seconds; run by tests/test_many_tasks_benchmark.py

Workload: 1,024 float32 features, an MLP trunk 1024-512-256, batch 256, T binary tasks with
50 % of their labels missing at random, T = 12, 100, 617 and 1,310. One training step is the
forward pass, the loss, the backward pass and an Adam step, on batches gathered beforehand
(the same batches for every variant):

- ``hand``: the trunk plus one ``nn.Linear(256, T)``, the masked BCE written with
  ``torch.where`` (per task: sum over observed / observed count; summed over tasks), fused Adam;
- ``taskmask``: a `MultiTaskModel` with T ``Task(kind="binary")`` heads, stepped by
  `Trainer`'s own step (``Trainer._step``, what ``fit`` runs per batch) inside
  ``model.fused_heads()``, as ``fit`` trains;
- ``per_task``: the same step with the heads left as one ``nn.Linear(256, 1)`` each (no fusing),
  for information: what a step cost before grouped heads.

Each variant starts from the same weights. The variants run interleaved: per repeat, each runs
a few warm-up steps and then ``steps`` timed steps; the figure is the median over repeats of
the time per step, in wall time and in process CPU time (with one torch thread, CPU time is
the work done whatever else the machine runs). Target: taskmask / hand <= 1.15x at every size.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from _common import benchmark_parser, chosen_settings, write_results
from torch import nn

from taskmask import MLPConfig, MLPTrunk, MultiTaskModel, Task, TrainConfig, Trainer
from taskmask._world import World
from taskmask.data import MultiTaskData
from taskmask.data._batches import InMemoryBatches
from taskmask.functional import EncodedLabels
from taskmask.training._batch_loss import PACKED
from taskmask.training._evaluate import batch_loss

Step = Callable[[MultiTaskData], None]
VARIANTS = ("hand", "taskmask", "per_task")


@dataclass(frozen=True)
class Settings:
    """Sizes of a run; `SMOKE` shrinks them to seconds."""

    n_features: int = 1024
    hidden: tuple[int, ...] = (512, 256)
    batch_size: int = 256
    tasks: tuple[int, ...] = (12, 100, 617, 1310)
    missing: float = 0.5
    n_batches: int = 4
    steps: int = 20
    warmup: int = 3
    repeats: int = 7
    seeds: tuple[int, ...] = (0,)


FULL = Settings()
SMOKE = Settings(
    n_features=16, hidden=(8, 4), batch_size=32, tasks=(3, 7), steps=2, warmup=1, repeats=2
)


def make_data(settings: Settings, n_tasks: int, seed: int) -> MultiTaskData:
    """Random inputs and 0/1 labels, ``missing`` of them unobserved, one task per column."""
    g = torch.Generator().manual_seed(seed)
    n = settings.batch_size * settings.n_batches
    inputs = torch.randn(n, settings.n_features, generator=g)
    target = (torch.rand(n, n_tasks, generator=g) < 0.3).float()
    observed = torch.rand(n, n_tasks, generator=g) >= settings.missing
    observed[0] = True  # every task has a label
    target = torch.where(observed, target, 0.0)
    labels = {
        f"t{j}": EncodedLabels(target[:, j : j + 1], observed[:, j : j + 1]) for j in range(n_tasks)
    }
    return MultiTaskData(inputs, labels)


def make_model(settings: Settings, n_tasks: int, seed: int) -> MultiTaskModel:
    torch.manual_seed(seed)
    trunk = MLPTrunk(settings.n_features, MLPConfig(hidden=settings.hidden))
    tasks = [Task(name=f"t{j}", kind="binary") for j in range(n_tasks)]
    return MultiTaskModel(trunk, tasks, (settings.n_features,))


def hand_step(model: MultiTaskModel) -> Step:
    """A hand-written step on a copy of ``model``'s trunk and its heads as one linear layer."""
    trunk = copy.deepcopy(model.trunk)
    heads = [model.heads[t.name] for t in model.tasks]
    head = nn.Linear(heads[0].in_features, len(heads))
    with torch.no_grad():
        head.weight.copy_(torch.cat([h.weight for h in heads]))
        head.bias.copy_(torch.cat([h.bias for h in heads]))
    net = nn.Sequential(trunk, head)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)

    def step(batch: MultiTaskData) -> None:
        labels = batch.labels[PACKED]
        logits = net(batch.inputs)
        loss = F.binary_cross_entropy_with_logits(logits, labels.target, reduction="none")
        masked = torch.where(labels.observed, loss, 0.0)
        per_task = masked.sum(0) / labels.observed.sum(0).clamp(min=1)
        optimizer.zero_grad(set_to_none=True)
        per_task.sum().backward()
        optimizer.step()

    return step


def trainer_step(model: MultiTaskModel, stack: ExitStack, *, fused: bool) -> Step:
    """`Trainer`'s own step on ``model`` (fused heads within ``stack`` when ``fused``)."""
    if fused:
        stack.enter_context(model.fused_heads())
    trainer = Trainer(TrainConfig(lr=1e-3, train_metrics=False, progress=False, device="cpu"))
    generator = torch.Generator().manual_seed(0)
    world = World(0, 1, torch.device("cpu"))
    fit = trainer._start(model, world, generator, MultiTaskData(torch.zeros(0, 1), {}), None)
    model.train()

    def step(batch: MultiTaskData) -> None:
        trainer._step(fit, model, batch, [])

    return step


def time_steps(step: Step, batches: list[MultiTaskData], settings: Settings) -> tuple[float, float]:
    """Wall and CPU milliseconds per step over ``steps`` steps, after ``warmup`` steps."""
    for i in range(settings.warmup):
        step(batches[i % len(batches)])
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(settings.steps):
        step(batches[i % len(batches)])
    per_step = 1000 / settings.steps
    return (time.perf_counter() - wall) * per_step, (time.process_time() - cpu) * per_step


def measure(settings: Settings, n_tasks: int, seed: int) -> dict[str, Any]:
    """Median ms per step of each variant at ``n_tasks`` tasks, and the ratios to ``hand``."""
    data = make_data(settings, n_tasks, seed)
    base = make_model(settings, n_tasks, seed)
    with ExitStack() as stack:
        fused, per_task = copy.deepcopy(base), copy.deepcopy(base)
        steps = {
            "hand": hand_step(base),
            "taskmask": trainer_step(fused, stack, fused=True),
            "per_task": trainer_step(per_task, stack, fused=False),
        }
        plan = batch_loss(fused, torch.device("cpu"))
        packed = plan.pack(data)
        world = World(0, 1, torch.device("cpu"))
        source = InMemoryBatches(packed, settings.batch_size, world)
        batches = list(source.epoch(torch.Generator().manual_seed(seed)))
        times: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
        for repeat in range(settings.repeats):
            order = VARIANTS if repeat % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                times[variant].append(time_steps(steps[variant], batches, settings))
    row: dict[str, Any] = {"tasks": n_tasks}
    for variant, pairs in times.items():
        row[f"{variant}_ms"] = statistics.median(w for w, _ in pairs)
        row[f"{variant}_ms_cpu"] = statistics.median(c for _, c in pairs)
    for variant in VARIANTS[1:]:
        for clock in ("", "_cpu"):
            row[f"{variant}_ratio{clock}"] = row[f"{variant}_ms{clock}"] / row[f"hand_ms{clock}"]
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| tasks | hand ms (cpu) | taskmask ms (cpu) | taskmask / hand (cpu) | "
        "per-task heads / hand (cpu) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['tasks']} | {r['hand_ms']:.2f} ({r['hand_ms_cpu']:.2f}) | "
            f"{r['taskmask_ms']:.2f} ({r['taskmask_ms_cpu']:.2f}) | "
            f"**{r['taskmask_ratio']:.2f}x** ({r['taskmask_ratio_cpu']:.2f}x) | "
            f"{r['per_task_ratio']:.2f}x ({r['per_task_ratio_cpu']:.2f}x) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = benchmark_parser(__doc__ or "", "many_tasks", seeds=1)
    args = parser.parse_args()
    settings: Settings = chosen_settings(args, FULL, SMOKE)
    print(f"torch.set_num_threads({torch.get_num_threads()}); batch {settings.batch_size}")
    rows = [measure(settings, n, settings.seeds[0]) for n in settings.tasks]
    text = table(rows)
    print(text)
    report = {"settings": settings.__dict__, "rows": rows, "target_ratio": 1.15}
    write_results(args.out, report, text)


if __name__ == "__main__":
    main()
