"""Label coverage of a data set: what is observed, how often positive, which tasks co-occur;
from the label statistics (`LabelStats`) of memory or of a stream alike."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from taskmask.data._memory import MultiTaskData
from taskmask.data._stream_stats import LabelStats, label_stats
from taskmask.tasks._task import Task

logger = logging.getLogger("taskmask")

WORST_SHOWN = 10
"""How many of the least-observed labels `Coverage.to_text` lists."""


@dataclass(frozen=True)
class Coverage:
    """``labels``: one row per task output (task, label, n_observed, observed fraction,
    n_positive and positive fraction of the observed, for a kind of flags (binary,
    multilabel) or of classes (multiclass, per class)). ``co_observed``: ``(task x task)``
    counts of rows carrying a label of both tasks (a row carries a task's label when any of its
    entries is observed)."""

    n_rows: int
    labels: pd.DataFrame
    co_observed: pd.DataFrame

    def to_text(self, *, worst: int = WORST_SHOWN) -> str:
        """A summary for a terminal or a log, at most ``worst + 6`` lines at any number of
        tasks: counts, the ``worst`` least-observed labels (every label when there are no
        more), and how many task pairs never share a row. The full tables are `labels` and
        `co_observed` (``coverage.csv``, ``co_observed.csv`` in a run directory)."""
        labels, n_tasks = self.labels, len(self.co_observed)
        seen = labels["n_observed"]
        lines = [
            f"label coverage over {self.n_rows} rows: {n_tasks} tasks, {len(labels)} labels; "
            f"observed per label: min {seen.min()}, median {seen.median():g}, max {seen.max()}"
        ]
        shown = labels.sort_values("n_observed", kind="stable").head(worst)
        title = "every label" if len(shown) == len(labels) else f"the {len(shown)} least observed"
        table = shown.to_string(index=False, float_format=lambda v: f"{v:.3f}")
        lines += [f"{title}:", table]
        counts = self.co_observed.to_numpy()
        pairs = n_tasks * (n_tasks - 1) // 2
        if pairs:
            upper = counts[np.triu_indices(n_tasks, k=1)]
            lines.append(
                f"task pairs sharing no row: {int((upper == 0).sum())} of {pairs}; "
                f"rows shared per pair: min {upper.min()}, median {np.median(upper):g}"
            )
        return "\n".join(lines)


def coverage(stats: LabelStats, tasks: Sequence[Task]) -> Coverage:
    """The `Coverage` report of ``tasks`` from their label statistics."""
    n, rows = stats.n_rows, []
    for task in tasks:
        counts, sums = stats.counts[task.name], stats.sums[task.name]
        for j, label in enumerate(task.output_names):
            seen = int(counts[j if len(counts) > 1 else 0])
            row: dict[str, object] = {
                "task": task.name,
                "label": label,
                "n_observed": seen,
                "observed_fraction": seen / n,
            }
            if task.spec.targets != "values":
                positives = int(sums[j])
                row.update(n_positive=positives, positive_fraction=positives / max(seen, 1))
            rows.append(row)
    names = pd.Index([task.name for task in tasks])
    return Coverage(
        n, pd.DataFrame(rows), pd.DataFrame(stats.co_observed.tolist(), index=names, columns=names)
    )


def label_coverage(data: MultiTaskData, tasks: Sequence[Task]) -> Coverage:
    """Coverage of ``data``'s labels for ``tasks`` (tasks absent from ``data`` count as never
    observed)."""
    return coverage(label_stats(tasks, data.labels, len(data)), tasks)


def warn_no_positives(coverage: Coverage, tasks: Sequence[Task], *, source: Path) -> None:
    """Log a warning (logger ``taskmask``) naming each label of a binary or multilabel task
    that has observed training labels but no positive among them: its head can learn nothing
    but "never"."""
    flags = [task.name for task in tasks if task.spec.tunes_thresholds]
    rows = coverage.labels
    if not flags or "n_positive" not in rows:
        return
    empty = rows[rows["task"].isin(flags) & (rows["n_observed"] > 0) & (rows["n_positive"] == 0)]
    if len(empty):
        names = [str(label) for label in empty["label"]]
        shown = ", ".join(repr(n) for n in names[:10]) + (" ..." if len(names) > 10 else "")
        logger.warning(
            "%s: %d labels have no positive among their observed training labels: %s",
            source,
            len(names),
            shown,
        )
