"""The ``search:`` block of a run config: what `taskmask tune` searches and how (docs/tune.md).

```yaml
search:
  monitor: val/tox/roc_auc     # a validation history key: val/loss, val/TASK/loss, val/TASK/METRIC
  direction: auto              # minimize, maximize, or auto: from the metric's name
  n_trials: 20                 # trials in the study in all (a resumed study counts its own)
  timeout: 3600                # optional: seconds for one `taskmask tune` call
  seed: 0                      # of the TPE sampler
  pruning: {startup_trials: 5, warmup_epochs: 0}   # median pruning; null: none
  params:                      # dotted config paths; `tasks.NAME.FIELD` names a task
    training.lr: {type: log_uniform, low: 1.0e-4, high: 1.0e-1}
    training.batch_size: {type: int, low: 32, high: 256, step: 32}
    model.trunk.hidden: {type: categorical, choices: [[32], [64, 64]]}
    training.weighting: {type: categorical, choices: [static, uncertainty]}
    tasks.tox.pos_weight: {type: uniform, low: 1, high: 10}
```

Only pydantic here: the block is checked whenever a config is loaded; Optuna is needed by
`taskmask.app.tune` alone.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from taskmask.tasks._metrics import higher_is_better

RangeType = Literal["log_uniform", "uniform", "int", "categorical"]


class ParamRange(BaseModel):
    """Where one config field is searched: ``log_uniform`` / ``uniform`` floats or ``int``s in
    ``[low, high]`` (``step``: a grid; not with ``log_uniform``), or one of ``choices``
    (any YAML values: numbers, strings, lists such as hidden sizes)."""

    model_config = ConfigDict(extra="forbid")

    type: RangeType
    low: int | float | None = None
    high: int | float | None = None
    choices: tuple[Any, ...] | None = Field(default=None, min_length=2)
    step: int | float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> ParamRange:
        if self.type == "categorical":
            extra = [k for k in ("low", "high", "step") if getattr(self, k) is not None]
            if self.choices is None or extra:
                raise ValueError(f"categorical takes choices only (got {self._given()})")
            return self
        if self.low is None or self.high is None or self.choices is not None:
            raise ValueError(f"{self.type} takes low and high, not choices (got {self._given()})")
        if not self.low < self.high:
            raise ValueError(f"low must be below high (got {self._given()})")
        if self.type == "log_uniform" and (self.low <= 0 or self.step is not None):
            raise ValueError(f"log_uniform needs low > 0 and no step (got {self._given()})")
        if self.type == "int" and not all(
            isinstance(v, int) for v in (self.low, self.high, self.step or 1)
        ):
            raise ValueError(f"int takes whole low, high and step (got {self._given()})")
        if self.step is not None and not _whole((self.high - self.low) / self.step):
            raise ValueError(f"high - low must be a multiple of step (got {self._given()})")
        return self

    def _given(self) -> str:
        given = self.model_dump(exclude={"type"}, exclude_none=True)
        return ", ".join(f"{key}={value!r}" for key, value in given.items())

    def candidates(self) -> tuple[Any, ...]:
        """The values that bound the range: its ends, or every choice."""
        return self.choices if self.choices is not None else (self.low, self.high)

    def labels(self) -> dict[Any, Any]:
        """Label -> choice, the labels being what Optuna stores (None, bool, int, float, str):
        a scalar choice as it is, anything else (a list of hidden sizes) as its JSON text."""
        scalar = (type(None), bool, int, float, str)
        return {(c if isinstance(c, scalar) else json.dumps(c)): c for c in self.choices or ()}


def _whole(ratio: float) -> bool:
    return math.isclose(ratio, round(ratio), rel_tol=0.0, abs_tol=1e-9)


class MedianPruning(BaseModel):
    """Stop a trial whose monitored value after an epoch is worse than the median of earlier
    trials at that epoch, once ``startup_trials`` trials have finished and from epoch
    ``warmup_epochs + 1`` on (`optuna.pruners.MedianPruner`)."""

    model_config = ConfigDict(extra="forbid")

    startup_trials: int = Field(default=5, ge=0)
    warmup_epochs: int = Field(default=0, ge=0)


class SearchConfig(BaseModel):
    """What `taskmask tune` searches (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    monitor: str = "val/loss"
    direction: Literal["auto", "minimize", "maximize"] = "auto"
    n_trials: int = Field(default=20, ge=1)
    timeout: float | None = Field(default=None, gt=0.0)
    seed: int = 0
    pruning: MedianPruning | None = MedianPruning()
    params: dict[str, ParamRange] = Field(min_length=1)

    @field_validator("monitor")
    @classmethod
    def _validation_only(cls, monitor: str) -> str:
        parts = monitor.split("/")
        if parts[0] != "val" or len(parts) < 2 or (len(parts) == 2 and parts[1] != "loss"):
            raise ValueError(
                "the objective is a validation history key: val/loss, val/TASK/loss or "
                "val/TASK/METRIC (never a test metric)"
            )
        return monitor

    @field_validator("params", mode="wrap")
    @classmethod
    def _name_the_path(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """Each problem led by the dotted path it is about (``training.lr: ...``)."""
        try:
            return handler(value)
        except ValidationError as error:
            problems: dict[str, list[str]] = {}
            for item in error.errors(include_url=False):
                where = ".".join(str(part) for part in item["loc"][:2])  # less union members
                message = str(item["msg"]).removeprefix("Value error, ")
                if len(item["loc"]) > 1:
                    message += f" (got {item['input']!r})"
                if message not in problems.setdefault(where, []):
                    problems[where].append(message)
            lines = [f"{where}: {' or '.join(messages)}" for where, messages in problems.items()]
            raise ValueError("; ".join(lines)) from None

    @property
    def maximize(self) -> bool:
        """Whether a larger objective is better; ``auto`` asks the metric's name."""
        if self.direction != "auto":
            return self.direction == "maximize"
        return higher_is_better(self.monitor.split("/", 2)[-1])
