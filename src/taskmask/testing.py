"""`check_kind`: the contract every task kind must meet, for plugin authors to run on theirs
(as scikit-learn's ``check_estimator``); taskmask's tests run it over every registered kind.

>>> from taskmask.tasks import get_kind
>>> check_kind(get_kind("count"))
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taskmask.functional._labels import EncodedLabels
from taskmask.functional._metrics import MetricValue, Undefined, to_jsonable
from taskmask.model._model import MultiTaskModel
from taskmask.model._trunks import MLPConfig, build_trunk
from taskmask.persistence import load_model, save_model
from taskmask.tasks._loss import task_loss
from taskmask.tasks._masking import encode_labels, resolve_task
from taskmask.tasks._metrics import higher_is_better, task_metrics
from taskmask.tasks._outputs import (
    initial_bias,
    label_sums,
    prediction_columns,
    task_decisions,
    task_scores,
)
from taskmask.tasks._registry import register_kind, unregister_kind
from taskmask.tasks._task import _REGISTRY, Task, TaskKindSpec

N_ROWS = 24
N_FEATURES = 8
CHECKED = "checked_kind"
"""The name an unregistered spec is registered under while it is checked."""


def _require(condition: bool, kind: str, what: str) -> None:
    if not condition:
        raise AssertionError(f"kind {kind!r}: {what}")


def _name_of(spec: TaskKindSpec) -> str | None:
    return next((name for name, known in _REGISTRY.items() if known is spec), None)


def sample_labels(task: Task, *, seed: int = 0) -> np.ndarray:
    """Raw labels of ``N_ROWS`` rows for ``task`` from its kind's ``targets``: 0/1 flags, class
    indices 0..2 or counts 0..4, about a third NaN, the first row all missing."""
    rng = np.random.default_rng(seed)
    spec = task.spec
    if spec.targets == "classes":
        high, columns = (len(task.labels) if task.labels else 3), 1
    else:
        known = task.labels or task.n_outputs or not spec.per_column
        high, columns = (2 if spec.targets == "flags" else 5), (task.width if known else 3)
    raw = rng.integers(0, high, size=(N_ROWS, columns)).astype(np.float64)
    raw[rng.random(raw.shape) < 0.35] = np.nan
    raw[0] = np.nan
    raw[1:4] = np.arange(3)[:, None] % high  # some of every value observed
    return raw[:, 0] if columns == 1 else raw


def _garbage(target: torch.Tensor) -> list[float]:
    if target.dtype.is_floating_point:
        return [math.nan, math.inf, -7.0, 1e6]
    return [-1.0, 10.0**6]


def _check_encoding(kind: str, raw: Any, enc: EncodedLabels, *, sampled: bool) -> None:
    target, observed = enc.target, enc.observed
    _require(observed.dtype == torch.bool, kind, f"observed is {observed.dtype}, not bool")
    _require(target.shape == observed.shape, kind, "target and observed differ in shape")
    _require(len(target) == len(raw), kind, f"{len(target)} encoded rows for {len(raw)}")
    _require(bool((target[~observed] == 0).all()), kind, "unobserved targets are not 0")
    if sampled:  # NaN marks exactly the missing entries of `sample_labels`
        present = int((~np.isnan(raw)).sum())
        _require(int(observed.sum()) == present, kind, "observed is not where labels are given")


def _loss_and_grad(
    task: Task, output: torch.Tensor, target: torch.Tensor, observed: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The loss sum, count and the sum's gradient with respect to ``output``."""
    leaf = output.detach().clone().requires_grad_()
    term = task_loss(task, leaf, target, observed)
    _require(term.sum.requires_grad, task.kind, "the loss sum is not connected to the graph")
    (grad,) = torch.autograd.grad(term.sum, leaf, allow_unused=True)
    grad = torch.zeros_like(leaf) if grad is None else grad
    return term.sum.detach(), term.count.detach(), grad


def _check_loss(kind: str, task: Task, output: torch.Tensor, enc: EncodedLabels) -> None:
    observed = enc.observed
    target = enc.target.to(output.dtype) if enc.target.is_floating_point() else enc.target
    total, count, grad = _loss_and_grad(task, output, target, observed)
    _require(total.ndim == 0 and count.ndim == 0, kind, "loss sum and count are not scalars")
    _require(total.dtype == output.dtype, kind, f"loss sum is {total.dtype}, not {output.dtype}")
    _require(bool(torch.isfinite(total)), kind, "the loss of valid labels is not finite")
    _require(float(count) == float(observed.sum()), kind, "count is not the observed entries")
    rows = observed.reshape(len(observed), -1).any(dim=1)
    unseen = grad[~observed] if observed.shape == grad.shape else grad[~rows]
    _require(bool((unseen == 0).all()), kind, "a missing label gets a non-zero gradient")
    for garbage in _garbage(target):
        filled = torch.where(observed, target, torch.full_like(target, garbage))
        other = _loss_and_grad(task, output, filled, observed)
        _require(torch.equal(other[0], total), kind, f"a missing {garbage} changes the loss")
        _require(torch.equal(other[2], grad), kind, f"a missing {garbage} changes the gradient")
    none = torch.zeros_like(observed)
    filled = torch.full_like(target, _garbage(target)[0])
    empty_sum, empty_count, empty_grad = _loss_and_grad(task, output, filled, none)
    _require(float(empty_sum) == 0.0 and float(empty_count) == 0.0, kind, "all missing is not 0")
    _require(bool((empty_grad == 0).all()), kind, "all missing gives a non-zero gradient")


def _same(a: dict[str, MetricValue], b: dict[str, MetricValue]) -> bool:
    return to_jsonable(a) == to_jsonable(b)


def _check_metrics(kind: str, task: Task, output: torch.Tensor, enc: EncodedLabels) -> None:
    target, observed = enc.target, enc.observed
    metrics = task_metrics(task, output, target, observed)
    spec = task.spec
    _require(
        all(isinstance(v, float | Undefined) for v in metrics.values()),
        kind,
        "a metric is neither a float nor Undefined",
    )
    rows = observed.reshape(len(observed), -1).any(dim=1)
    moved = torch.where(rows.reshape(-1, *[1] * (output.ndim - 1)), output, output + 3.0)
    filled = torch.where(observed, target, torch.full_like(target, _garbage(target)[-1]))
    _require(_same(task_metrics(task, moved, filled, observed), metrics), kind, "missing counts")
    direction = higher_is_better(spec.summary)
    _require(direction == spec.higher_is_better, kind, "the summary's direction is not declared")


def _check_outputs(kind: str, task: Task, output: torch.Tensor, enc: EncodedLabels) -> None:
    scores = task_scores(task, output.detach().float())
    _require(len(scores) == len(output), kind, "scores do not have one row per input")
    decisions, names = task_decisions(task, scores)
    for part in (decisions, names):
        _require(part is None or len(part) == len(output), kind, "decisions miss rows")
    columns = prediction_columns(task, scores, decisions, names)
    _require(bool(columns), kind, "no prediction column")
    _require(all(len(v) == len(output) for v in columns.values()), kind, "short column")
    counts = enc.observed.reshape(len(output), -1).sum(0)
    bias = initial_bias(task, counts, label_sums(task, enc, len(output)))
    if bias is not None:
        _require(bias.shape == (task.width,), kind, f"initial bias of shape {tuple(bias.shape)}")
        _require(bool(torch.isfinite(bias).all()), kind, "the initial bias is not finite")


def _check_round_trip(kind: str, task: Task, inputs: torch.Tensor) -> torch.Tensor:
    """A model with the task saves and loads back equal; its float64 outputs for ``inputs``."""
    _require(Task.model_validate_json(task.model_dump_json()) == task, kind, "JSON differs")
    torch.manual_seed(0)
    trunk = build_trunk(MLPConfig(hidden=(N_FEATURES,)), (N_FEATURES,))
    model = MultiTaskModel(trunk, [task], (N_FEATURES,)).eval()
    with torch.no_grad(), tempfile.TemporaryDirectory() as directory:
        output = model(inputs)[task.name]
        loaded = load_model(save_model(model, Path(directory) / "model"))
        again = loaded(inputs)[task.name]
    _require(loaded.tasks == (task,), kind, "the saved task does not load back equal")
    _require(torch.equal(again, output), kind, "a loaded model predicts differently")
    return output.double()


def check_kind(
    spec: TaskKindSpec, *, task: Task | None = None, raw: Any = None, seed: int = 0
) -> None:
    """Check ``spec``'s contract on a task of its kind; `AssertionError` naming what fails.

    ``spec`` may be registered already (under any name); else it is registered as
    ``"checked_kind"`` while checked. ``task`` (default ``Task(kind=...)``) and ``raw`` labels
    of any number of rows (default `sample_labels`, with NaN for missing) set what is checked:
    encoding (target and bool observed of one shape, missing targets 0), the loss (missing
    entries change neither the sum nor any gradient whatever their target holds, NaN and inf
    included; an all-missing task gives an exact, graph-connected 0; sum and count are scalars
    of the output's dtype; count is the observed entries), metrics (missing entries count for
    nothing; the summary's direction is declared), predictions and the initial bias (one row
    or value per row or output), and a save / load round trip of a model with the task.
    """
    name = _name_of(spec)
    if name is None:
        register_kind(CHECKED, spec)
    kind = name or CHECKED
    try:
        task = task or Task(name="t", kind=kind)
        sampled = raw is None
        raw = sample_labels(task, seed=seed) if raw is None else raw
        task = resolve_task(task, raw)
        enc = encode_labels(task, raw, source="check_kind")
        _check_encoding(kind, raw, enc, sampled=sampled)
        inputs = torch.randn(len(raw), N_FEATURES, generator=torch.Generator().manual_seed(seed))
        output = _check_round_trip(kind, task, inputs)
        _check_loss(kind, task, output, enc)
        _check_metrics(kind, task, output, enc)
        _check_outputs(kind, task, output, enc)
    finally:
        if name is None:
            unregister_kind(CHECKED)
