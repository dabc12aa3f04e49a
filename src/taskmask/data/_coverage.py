"""Label coverage of a data set: what is observed, how often positive, which tasks co-occur."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from taskmask.data._memory import MultiTaskData
from taskmask.tasks._task import Task


@dataclass(frozen=True)
class Coverage:
    """``labels``: one row per task output (task, label, n_observed, observed fraction,
    n_positive and positive fraction of the observed, for binary / multilabel; per class for
    multiclass). ``co_observed``: ``(task x task)`` counts of rows carrying a label of both
    tasks (a row carries a task's label when any of its entries is observed)."""

    n_rows: int
    labels: pd.DataFrame
    co_observed: pd.DataFrame

    def to_text(self) -> str:
        """A readable report for a terminal or a log."""
        labels = self.labels.to_string(index=False, float_format=lambda v: f"{v:.3f}")
        return (
            f"label coverage over {self.n_rows} rows\n{labels}\n\n"
            f"rows carrying labels of both tasks\n{self.co_observed.to_string()}"
        )


def _label_rows(
    task: Task, target: torch.Tensor, observed: torch.Tensor
) -> list[dict[str, object]]:
    n = len(observed)
    if task.kind == "multiclass":
        seen = int(observed.sum())
        return [
            {
                "task": task.name,
                "label": name,
                "n_observed": seen,
                "observed_fraction": seen / n,
                "n_positive": int(((target == k) & observed).sum()),
                "positive_fraction": float(((target == k) & observed).sum()) / max(seen, 1),
            }
            for k, name in enumerate(task.output_names)
        ]
    rows: list[dict[str, object]] = []
    for j, name in enumerate(task.output_names):
        seen = int(observed[:, j].sum())
        row: dict[str, object] = {
            "task": task.name,
            "label": name,
            "n_observed": seen,
            "observed_fraction": seen / n,
        }
        if task.kind in ("binary", "multilabel"):
            positives = int(((target[:, j] > 0.5) & observed[:, j]).sum())
            row.update(n_positive=positives, positive_fraction=positives / max(seen, 1))
        rows.append(row)
    return rows


def label_coverage(data: MultiTaskData, tasks: tuple[Task, ...] | list[Task]) -> Coverage:
    """Coverage of ``data``'s labels for ``tasks`` (tasks absent from ``data`` count as never
    observed)."""
    n = len(data)
    rows: list[dict[str, object]] = []
    carries = {}
    for task in tasks:
        if task.name in data.labels:
            enc = data.labels[task.name]
            rows.extend(_label_rows(task, enc.target, enc.observed))
            observed = enc.observed
            carries[task.name] = observed if observed.ndim == 1 else observed.any(dim=1)
        else:
            carries[task.name] = torch.zeros(n, dtype=torch.bool)
    names = [task.name for task in tasks]
    stacked = torch.stack([carries[name] for name in names], dim=1).to(torch.int64)
    counts = (stacked.T @ stacked).tolist()
    return Coverage(
        n,
        pd.DataFrame(rows),
        pd.DataFrame(counts, index=pd.Index(names), columns=pd.Index(names)),
    )
