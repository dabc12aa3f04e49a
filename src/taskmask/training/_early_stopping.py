"""Early stopping: the `EarlyStopping` settings and the `Stopper` that keeps the best monitored
value and the weights that gave it, for `taskmask.training.Trainer` (and its checkpoints)."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from taskmask.errors import TaskmaskError
from taskmask.tasks._metrics import higher_is_better
from taskmask.tasks._task import Task

MONITOR_FORMS = (
    "{part}/loss",
    "{part}/mean/<metric>",
    "{part}/<task>/loss",
    "{part}/<task>/<metric>",
)
"""The history keys early stopping may monitor; ``part`` is ``val`` or ``train``; ``mean``
is over tasks (``{part}/mean/loss``, ``{part}/mean/roc_auc``, ...)."""


def check_monitor(monitor: str, tasks: tuple[Task, ...], has_validation: bool) -> None:
    """Refuse, before training, a ``monitor`` that no epoch's history can hold."""
    part, _, rest = monitor.partition("/")
    names = {t.name for t in tasks}
    head, _, metric = rest.partition("/")
    known = part in ("val", "train") and (
        rest == "loss" or (head == "mean" and metric != "") or (head in names and metric != "")
    )
    if not known:
        raise TaskmaskError(
            f"early stopping monitor {monitor!r} is not a history key; valid forms: "
            f"{', '.join(MONITOR_FORMS)} (part: val or train; tasks: {sorted(names)})"
        )
    if part == "val" and not has_validation:
        raise TaskmaskError(
            f"early stopping monitors {monitor!r} but there is no validation data; "
            "set validation_split or pass validation data"
        )


class EarlyStopping(BaseModel):
    """Stop when ``monitor`` (a history key such as ``val/loss``, ``val/tox/roc_auc`` or the
    cross-task ``val/mean/roc_auc``; see `MONITOR_FORMS`) has not improved by more than
    ``min_delta`` for ``patience`` epochs; restore the best weights."""

    model_config = ConfigDict(extra="forbid")

    monitor: str = Field(default="val/loss", pattern=r"^(val|train)/[^/]+(/.+)?$")
    mode: Literal["auto", "min", "max"] = "auto"
    patience: int = Field(default=10, ge=1)
    min_delta: float = Field(default=0.0, ge=0.0)
    restore_best: bool = True


class Stopper:
    """Early-stopping bookkeeping: the best monitored value and the weights that gave it."""

    def __init__(self, config: EarlyStopping | None, has_validation: bool) -> None:
        self.config = config
        if config is not None and config.monitor.startswith("val/") and not has_validation:
            raise TaskmaskError(
                f"early stopping monitors {config.monitor!r} but there is no validation data; "
                "set validation_split or pass validation data"
            )
        self.best = math.nan
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.waited = 0

    def _better(self, value: float) -> bool:
        assert self.config is not None
        mode = self.config.mode
        if mode == "auto":
            mode = "max" if higher_is_better(self.config.monitor.split("/", 2)[-1]) else "min"
        if math.isnan(self.best):
            return True
        if mode == "max":
            return value > self.best + self.config.min_delta
        return value < self.best - self.config.min_delta

    def update(self, row: Mapping[str, float], model: nn.Module) -> bool:
        """Record an epoch; True when training should stop."""
        if self.config is None:
            return False
        if self.config.monitor not in row:
            raise TaskmaskError(
                f"early stopping monitor {self.config.monitor!r} is not in the history; "
                f"available: {sorted(row)}"
            )
        value = row[self.config.monitor]
        if not math.isnan(value) and self._better(value):
            self.best, self.waited, self.best_epoch = value, 0, int(row.get("epoch", 0))
            self.best_state = copy.deepcopy(model.state_dict())
            return False
        self.waited += 1
        return self.waited >= self.config.patience

    @property
    def exhausted(self) -> bool:
        """Whether the patience ran out (training stopped early)."""
        return self.config is not None and self.waited >= self.config.patience

    def restore(self, model: nn.Module) -> bool:
        """Load the best weights if so configured; whether it did."""
        if self.config is not None and self.config.restore_best and self.best_state is not None:
            model.load_state_dict(self.best_state)
            return True
        return False

    def stop_message(self, epoch: int, *, restored: bool) -> str:
        """What happened when the run stopped early at ``epoch``."""
        assert self.config is not None
        c = self.config
        epochs = f"{c.patience} epoch" + ("s" if c.patience > 1 else "")
        what = f"{c.monitor} did not improve by more than {c.min_delta:g} for {epochs}"
        best = f"epoch {self.best_epoch} ({c.monitor} {self.best:.4g})"
        kept = f"restored the weights of {best}" if restored else f"kept the last; best: {best}"
        return f"early stopping at epoch {epoch}: {what}; {kept}"

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The best weights (empty if none yet), and the rest as JSON-able values."""
        values = {"best": self.best, "waited": self.waited, "best_epoch": self.best_epoch}
        return self.best_state or {}, values

    def load_state(self, values: Mapping[str, Any], best_state: dict[str, torch.Tensor]) -> None:
        self.best, self.waited = float(values["best"]), int(values["waited"])
        self.best_epoch = int(values.get("best_epoch", 0))  # older checkpoints have none
        self.best_state = best_state or None
