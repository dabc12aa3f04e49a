"""Training: the `Trainer` and its callbacks, its per-task batch loss, `evaluate`, early
stopping, checkpoints (``taskmask.training.checkpoint``), learning-rate schedules and
gradient diagnostics.
"""

from taskmask.training._batch_loss import BatchLoss, LossFn
from taskmask.training._callbacks import Callback, Fit
from taskmask.training._early_stopping import EarlyStopping
from taskmask.training._evaluate import Evaluation, evaluate
from taskmask.training._schedule import Schedule
from taskmask.training._trainer import TrainConfig, Trainer

__all__ = [
    "BatchLoss",
    "Callback",
    "EarlyStopping",
    "Evaluation",
    "Fit",
    "LossFn",
    "Schedule",
    "TrainConfig",
    "Trainer",
    "evaluate",
]
