"""Experiment trackers for ``taskmask train``: TensorBoard event files and MLflow runs.

```yaml
trackers:
  tensorboard: runs/tb              # a log directory (relative to the config file)
  mlflow: {tracking_uri: "sqlite:///mlflow.db", experiment: toxicity, run_name: first}
```

Once the run directory is written, each tracker gets the run: its parameters (the settings
that apply, as ``section.key``; TensorBoard: the config as text), every history column as a
per-epoch metric (step = epoch), the validation and test metrics at the last epoch (keys
``validation/TASK/METRIC``), and, for MLflow, the run directory as an artefact (``run/``).
Each needs its extra: ``pip install "taskmask[tensorboard]"`` / ``"taskmask[mlflow]"``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict

from taskmask.errors import TaskmaskError
from taskmask.functional._metrics import MetricValue, Undefined

logger = logging.getLogger("taskmask")


class MlflowTracker(BaseModel):
    """Where an MLflow run goes: ``tracking_uri`` (e.g. ``sqlite:///mlflow.db`` or a tracking
    server's URL; None: MLflow's own default), the experiment and the run's name."""

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str | None = None
    experiment: str = "taskmask"
    run_name: str | None = None


class Trackers(BaseModel):
    """The trackers a run reports to (none by default)."""

    model_config = ConfigDict(extra="forbid")

    tensorboard: Path | None = None
    mlflow: MlflowTracker | None = None

    def resolved(self, base: Path) -> Trackers:
        """A relative TensorBoard directory taken from ``base``."""
        if self.tensorboard is None:
            return self
        return self.model_copy(update={"tensorboard": base / self.tensorboard.expanduser()})


def flatten(raw: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``{"training": {"lr": 0.1}}`` as ``("training.lr", 0.1)``; tasks by name."""
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if key == "tasks" and isinstance(value, list):
            for task in value:
                yield from flatten(
                    {k: v for k, v in task.items() if k != "name"}, f"tasks.{task['name']}."
                )
        elif isinstance(value, Mapping):
            yield from flatten(value, f"{name}.")
        else:
            yield name, value


def _series(history: pd.DataFrame) -> Iterator[tuple[int, dict[str, float]]]:
    """Per epoch, its finite numeric values."""
    numeric = history.apply(pd.to_numeric, errors="coerce")
    for _, row in numeric.iterrows():
        epoch = int(row["epoch"])
        values = {k: float(v) for k, v in row.items() if k != "epoch" and math.isfinite(v)}
        yield epoch, values


def _final(metrics: Mapping[str, Mapping[str, Mapping[str, MetricValue]]]) -> dict[str, float]:
    return {
        f"{part}/{task}/{key}": float(value)
        for part, by_task in metrics.items()
        for task, values in by_task.items()
        for key, value in values.items()
        if not isinstance(value, Undefined) and math.isfinite(value)
    }


def _tensorboard(
    directory: Path, config_yaml: str, history: pd.DataFrame, final: dict[str, float]
) -> None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TaskmaskError(
            'trackers.tensorboard needs TensorBoard: pip install "taskmask[tensorboard]"'
        ) from None
    writer = SummaryWriter(str(directory))
    try:
        writer.add_text("config", f"```yaml\n{config_yaml}```")
        last = 0
        for epoch, values in _series(history):
            for key, value in values.items():
                writer.add_scalar(key, value, epoch)
            last = epoch
        for key, value in final.items():
            writer.add_scalar(key, value, last)
    finally:
        writer.close()


def _mlflow(
    settings: MlflowTracker,
    params: dict[str, Any],
    history: pd.DataFrame,
    final: dict[str, float],
    run_dir: Path,
) -> str:
    try:
        import mlflow
    except ImportError:
        raise TaskmaskError(
            'trackers.mlflow needs MLflow: pip install "taskmask[mlflow]"'
        ) from None
    if settings.tracking_uri is not None:
        mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_experiment(settings.experiment)
    with mlflow.start_run(run_name=settings.run_name) as run:
        mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
        last = 0
        for epoch, values in _series(history):
            mlflow.log_metrics(values, step=epoch)
            last = epoch
        if final:
            mlflow.log_metrics(final, step=last)
        mlflow.log_artifacts(str(run_dir), artifact_path="run")
        return str(run.info.run_id)


def report_run(
    trackers: Trackers,
    *,
    config: Mapping[str, Any],
    config_yaml: str,
    history: pd.DataFrame,
    metrics: Mapping[str, Mapping[str, Mapping[str, MetricValue]]],
    run_dir: Path,
) -> None:
    """Send a finished run to every tracker of ``trackers`` (see the module docstring)."""
    final = _final(metrics)
    if trackers.tensorboard is not None:
        _tensorboard(trackers.tensorboard, config_yaml, history, final)
        logger.info("wrote TensorBoard events to %s", trackers.tensorboard)
    if trackers.mlflow is not None:
        params = dict(flatten({k: v for k, v in config.items() if k != "trackers"}))
        run_id = _mlflow(trackers.mlflow, params, history, final, run_dir)
        logger.info("logged MLflow run %s (experiment %s)", run_id, trackers.mlflow.experiment)
