"""Small training jobs that tests run in other processes (under torchrun, or to be killed).

    python tests/training_script.py JOBS.json

runs each job of the JSON list in order: ``{"cli": [argv...]}`` runs ``taskmask.app.cli.main``;
``{"name": N, "out": DIR, "config": {...}}`` trains `model` on `problem` with that
`TrainConfig` and saves, per rank, ``DIR/N-rankR.safetensors`` and (rank 0) the history as
``DIR/N.json``. A job with ``"hang_after": K`` writes ``DIR/N.hanging`` and sleeps in its
``K``-th training batch (counting from the run's first), to be killed there. The tests import
`train` and `problem` to run the same jobs in their own process.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from taskmask import MLPConfig, MLPTrunk, MultiTaskData, MultiTaskModel, Task, make_data
from taskmask._world import rank
from taskmask.functional import LossTerm
from taskmask.tasks import task_loss
from taskmask.training import TrainConfig, Trainer

N_FEATURES = 4
TASKS = (
    Task(name="b", kind="binary"),
    Task(name="m", kind="multilabel", labels=("m0", "m1")),
    Task(name="c", kind="multiclass", labels=("x", "y", "z")),
    Task(name="r", kind="regression"),
)


def problem(n_rows: int = 203, seed: int = 0) -> MultiTaskData:
    """Learnable labels for `TASKS`, 30 % of them missing."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, N_FEATURES))
    labels = {
        "b": (x[:, 0] > 0).astype(float),
        "m": (x[:, :2] > 0).astype(float),
        "c": np.digitize(x[:, 1], [-0.4, 0.4]).astype(float),
        "r": x[:, 2] - x[:, 3],
    }
    for name, values in labels.items():
        labels[name] = np.where(rng.random(values.shape) < 0.3, np.nan, values)
    return make_data(x, labels, TASKS)


def model(hidden: tuple[int, ...] = (8,), dropout: float = 0.0) -> MultiTaskModel:
    torch.manual_seed(0)
    trunk = MLPTrunk(N_FEATURES, MLPConfig(hidden=hidden, dropout=dropout))
    return MultiTaskModel(trunk, TASKS, (N_FEATURES,))


class _Regression:
    """The regression task's default loss, counting training batches (one call each, with
    static weighting and no validation) and sleeping for good in call ``hang_after``."""

    def __init__(self, hang_after: int | None, marker: Path) -> None:
        self.calls, self.hang_after, self.marker = 0, hang_after, marker

    def __call__(
        self, task: Task, output: torch.Tensor, target: torch.Tensor, observed: torch.Tensor
    ) -> LossTerm:
        self.calls += 1
        if self.calls == self.hang_after:
            self.marker.write_text(str(self.calls))
            time.sleep(3600)
        return task_loss(task, output, target, observed)


def train(
    name: str,
    out: Path,
    config: dict[str, Any],
    *,
    resume: bool = False,
    hang_after: int | None = None,
    dropout: float = 0.0,
    rows: int = 203,
) -> tuple[MultiTaskModel, list[dict[str, float]]]:
    """Train on ``problem(rows)``; save the weights (and on rank 0 the history) into ``out``."""
    net = model(dropout=dropout)
    loss = _Regression(hang_after, Path(out) / f"{name}.hanging")
    trainer = Trainer(TrainConfig.model_validate(config), loss_fns={"r": loss})
    history = trainer.fit(net, problem(rows), resume=resume)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(Path(out) / f"{name}-rank{rank()}.safetensors"))
    if rank() == 0:
        (Path(out) / f"{name}.json").write_text(json.dumps(history))
    return net, history


def main(jobs_file: str) -> int:
    from taskmask.app.cli import main as cli

    torch.set_num_threads(1)
    for job in json.loads(Path(jobs_file).read_text()):
        if "cli" in job:
            if cli(job["cli"]) != 0:
                return 1
        else:
            train(job["name"], Path(job["out"]), job["config"], **job.get("options", {}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
