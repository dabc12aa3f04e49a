"""What one streaming pass over training data learns, chunk by chunk, in memory that does not
grow with the number of rows: observed-label counts per task output (`LabelStats`) and the
features' means and variances (`Moments`). Each is computed per chunk by a pure function and
merged with ``+``; the results equal those of the whole data in memory (counts exactly, means
and variances up to float64 rounding).

`taskmask.data` uses them where in-memory training reads the whole training set: the
"every task has a label" check, ``pos_weight="balanced"``, the heads' starting bias (a kind's
``initial_bias``), input standardisation and the label coverage report. In memory, the same
functions run on all rows as one chunk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from taskmask.functional._labels import EncodedLabels
from taskmask.tasks._outputs import initial_bias, label_sums
from taskmask.tasks._task import Task


@dataclass(frozen=True)
class LabelStats:
    """Over ``n_rows`` rows, per task name: ``counts`` ``(k,)`` int64, the observed entries of
    each column of ``observed`` (``task.label_columns``: a multiclass task ``(1,)``); ``sums``
    ``(width,)`` float64 (`taskmask.tasks.label_sums`): the observed rows per class for class
    labels, else the sum of the observed targets (the positives of flags).
    ``co_observed`` ``(T, T)`` int64 counts rows carrying a label of both tasks (any observed
    entry), in task order."""

    n_rows: int
    counts: Mapping[str, torch.Tensor]
    sums: Mapping[str, torch.Tensor]
    co_observed: torch.Tensor

    def __add__(self, other: LabelStats) -> LabelStats:
        return LabelStats(
            self.n_rows + other.n_rows,
            {name: count + other.counts[name] for name, count in self.counts.items()},
            {name: total + other.sums[name] for name, total in self.sums.items()},
            self.co_observed + other.co_observed,
        )

    def n_observed(self) -> dict[str, int]:
        """Observed label entries per task (as `MultiTaskData.n_observed`)."""
        return {name: int(count.sum()) for name, count in self.counts.items()}


def label_stats(
    tasks: Sequence[Task], labels: Mapping[str, EncodedLabels], n_rows: int
) -> LabelStats:
    """The `LabelStats` of one chunk; a task absent from ``labels`` has no observed label."""
    counts, sums, carries = {}, {}, []
    for task in tasks:
        enc = labels.get(task.name)
        if enc is None:
            counts[task.name] = torch.zeros(task.label_columns, dtype=torch.int64)
            sums[task.name] = torch.zeros(task.width, dtype=torch.float64)
            carries.append(torch.zeros(n_rows, dtype=torch.bool))
            continue
        observed = enc.observed.reshape(n_rows, -1)
        counts[task.name] = observed.sum(0)
        sums[task.name] = label_sums(task, enc, n_rows)
        carries.append(observed.any(dim=1))
    stacked = torch.stack(carries, dim=1).double() if carries else torch.zeros(n_rows, 0)
    co_observed = (stacked.T @ stacked).round().to(torch.int64)  # exact: BLAS, float64 counts
    return LabelStats(n_rows, counts, sums, co_observed)


def balanced_pos_weights(task: Task, stats: LabelStats) -> tuple[float, ...]:
    """``negatives / positives`` per label of a binary / multilabel task (1 for a label with no
    observed positive or negative), as `taskmask.functional.balanced_pos_weight` on all rows."""
    positives = stats.sums[task.name].float()
    negatives = stats.counts[task.name].float() - positives
    ratio = negatives / positives.clamp(min=1)
    weights = torch.where((positives > 0) & (negatives > 0), ratio, torch.ones_like(ratio))
    return tuple(weights.tolist())


def balanced_tasks(tasks: Sequence[Task], stats: LabelStats) -> tuple[Task, ...]:
    """``tasks`` with ``pos_weight="balanced"`` replaced by `balanced_pos_weights` on ``stats``."""
    return tuple(
        t.model_copy(update={"pos_weight": balanced_pos_weights(t, stats)})
        if t.pos_weight == "balanced"
        else t
        for t in tasks
    )


def initial_biases(tasks: Sequence[Task], stats: LabelStats) -> dict[str, torch.Tensor]:
    """Each head's starting bias by task name, for the tasks whose kind sets one
    (`taskmask.tasks.initial_bias`: a regression head's observed mean, ...)."""
    biases = {}
    for task in tasks:
        if task.name in stats.counts:
            bias = initial_bias(task, stats.counts[task.name], stats.sums[task.name])
            if bias is not None:
                biases[task.name] = bias
    return biases


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations ``m2`` of each feature (float64 ``(F,)``)."""

    n: int
    mean: np.ndarray
    m2: np.ndarray

    def __add__(self, other: Moments) -> Moments:
        """Both chunks' moments (Chan, Golub and LeVeque's pairwise update: no cancellation)."""
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.n * other.n / n)
        return Moments(n, mean, m2)

    def standardization(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and scale ``(1, F)`` float32 as `taskmask.api.standardization` gives on all rows
        (population standard deviation; a constant feature gets scale 1)."""
        std = np.sqrt(self.m2 / max(self.n, 1))
        scale = np.where(std > 0, std, 1.0)
        as_row = [torch.from_numpy(v[None, :].astype(np.float32)) for v in (self.mean, scale)]
        return as_row[0], as_row[1]


def moments(inputs: np.ndarray) -> Moments:
    """The `Moments` of a chunk of features ``(n, F)``."""
    values = inputs.astype(np.float64)  # one float64 copy, then in place
    mean = values.mean(axis=0)
    np.subtract(values, mean, out=values)
    return Moments(len(values), mean, np.square(values, out=values).sum(axis=0))
