"""Learning-rate schedules: `Schedule` (the ``training.scheduler`` settings) and the
`LearningRate` that steps a `torch.optim.lr_scheduler` once per epoch, after a linear warm-up.

The schedule is stepped at the end of every epoch, so epoch ``e`` trains with one learning rate
(``lr`` in the history). Its state is plain numbers (`state` / `load_state`), kept in the
checkpoint's JSON, so that a resumed run follows the same learning rates bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch.optim import lr_scheduler

from taskmask.errors import TaskmaskError
from taskmask.tasks._metrics import higher_is_better


class Schedule(BaseModel):
    """A learning-rate schedule over the run's ``epochs``, after ``warmup_epochs`` epochs whose
    rate rises linearly from ``lr / (warmup_epochs + 1)`` to ``lr``.

    - ``cosine``: `CosineAnnealingLR`, from ``lr`` down to ``min_lr`` at the last epoch;
    - ``onecycle``: `OneCycleLR` peaking at ``lr`` after ``warmup_epochs`` (default 30 % of
      the epochs; it is its own warm-up), starting and ending far below it;
    - ``step``: `StepLR`, ``lr`` times ``gamma`` every ``step_size`` epochs;
    - ``plateau``: `ReduceLROnPlateau`, ``lr`` times ``gamma`` once ``monitor`` (a history key)
      has not improved for more than ``patience`` epochs, never below ``min_lr``.

    The schedule spans the ``epochs`` of the run it started in, also when a resumed run
    changes ``epochs``.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["cosine", "onecycle", "step", "plateau"]
    warmup_epochs: int = Field(default=0, ge=0)
    min_lr: float = Field(default=0.0, ge=0.0)
    step_size: int = Field(default=10, ge=1)
    gamma: float = Field(default=0.1, gt=0.0, le=1.0)
    monitor: str = "val/loss"
    patience: int = Field(default=5, ge=0)

    @model_validator(mode="after")
    def _check(self) -> Schedule:
        if self.type != "plateau" and "monitor" in self.model_fields_set:
            raise ValueError(f"monitor applies to type: plateau only, not {self.type!r}")
        if self.type != "step" and "step_size" in self.model_fields_set:
            raise ValueError(f"step_size applies to type: step only, not {self.type!r}")
        return self


def _warmup(optimizer: torch.optim.Optimizer, epochs: int) -> lr_scheduler.LinearLR:
    return lr_scheduler.LinearLR(optimizer, start_factor=1 / (epochs + 1), total_iters=epochs)


class LearningRate:
    """Steps ``optimizer``'s learning rate after every epoch as ``schedule`` says, over
    ``epochs`` epochs."""

    def __init__(self, schedule: Schedule, optimizer: torch.optim.Optimizer, epochs: int) -> None:
        if schedule.warmup_epochs >= epochs:
            raise TaskmaskError(
                f"training.scheduler.warmup_epochs: {schedule.warmup_epochs} warm-up epochs "
                f"leave none of the {epochs} epochs to schedule; expected fewer than {epochs}"
            )
        self.schedule = schedule
        self.optimizer = optimizer
        warm = schedule.warmup_epochs
        self.plateau: lr_scheduler.ReduceLROnPlateau | None = None
        self.scheduler: lr_scheduler.LRScheduler | None = None
        self.warmup: lr_scheduler.LinearLR | None = None
        if schedule.type == "onecycle":
            lr = optimizer.param_groups[0]["lr"]
            if warm + 1 >= epochs:
                raise TaskmaskError(
                    f"training.scheduler.warmup_epochs: a one-cycle schedule needs an epoch "
                    f"after its peak; expected fewer than {epochs - 1} warm-up epochs, got {warm}"
                )
            rise = (warm + 1) / epochs if warm else 0.3  # the rate peaks in epoch warm + 1
            self.scheduler = lr_scheduler.OneCycleLR(
                optimizer, max_lr=lr, total_steps=epochs, pct_start=rise
            )
        elif schedule.type == "plateau":
            self.warmup = _warmup(optimizer, warm) if warm else None
            self.plateau = lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode="max" if higher_is_better(schedule.monitor.split("/")[-1]) else "min",
                factor=schedule.gamma,
                patience=schedule.patience,
                min_lr=schedule.min_lr,
            )
        else:
            main = (
                lr_scheduler.CosineAnnealingLR(
                    optimizer, T_max=max(epochs - warm - 1, 1), eta_min=schedule.min_lr
                )
                if schedule.type == "cosine"
                else lr_scheduler.StepLR(
                    optimizer, step_size=schedule.step_size, gamma=schedule.gamma
                )
            )
            self.scheduler = (
                lr_scheduler.SequentialLR(
                    optimizer, [_warmup(optimizer, warm), main], milestones=[warm]
                )
                if warm
                else main
            )
        self.epochs_done = 0

    @property
    def lr(self) -> float:
        """The learning rate the next epoch trains with."""
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self, row: Mapping[str, float]) -> None:
        """After an epoch whose history row is ``row``."""
        self.epochs_done += 1
        cycle = self.scheduler
        if isinstance(cycle, lr_scheduler.OneCycleLR) and cycle.last_epoch >= cycle.total_steps:
            return  # a resumed run longer than the cycle: the rate stays at its end
        if self.scheduler is not None:
            self.scheduler.step()
            return
        assert self.plateau is not None
        if self.warmup is not None and self.epochs_done <= self.schedule.warmup_epochs:
            self.warmup.step()
            return
        monitor = self.schedule.monitor
        if monitor not in row:
            raise TaskmaskError(
                f"training.scheduler.monitor: {monitor!r} is not in the history; "
                f"available: {sorted(row)}"
            )
        if not math.isnan(row[monitor]):
            self.plateau.step(row[monitor])

    def _parts(self) -> dict[str, Any]:
        parts = {"scheduler": self.scheduler, "plateau": self.plateau, "warmup": self.warmup}
        return {key: part for key, part in parts.items() if part is not None}

    def state(self) -> dict[str, Any]:
        """JSON-able state: the schedulers' `state_dict`s and the epochs stepped."""
        state: dict[str, Any] = {"epochs_done": self.epochs_done}
        state.update({k: _jsonable(v.state_dict()) for k, v in self._parts().items()})
        return state

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.epochs_done = int(state["epochs_done"])
        for key, part in self._parts().items():
            part.load_state_dict(dict(state[key]))


def _jsonable(value: Any) -> Any:
    """``value`` with tuples as lists, checked to hold nothing but JSON's types."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"a learning-rate scheduler state holds a {type(value).__name__}")
