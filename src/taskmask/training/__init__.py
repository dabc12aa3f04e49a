"""Training: the `Trainer`, its per-task batch loss, early stopping, checkpoints
(``taskmask.training.checkpoint``), learning-rate schedules and gradient diagnostics.
"""

from taskmask.training._batch_loss import BatchLoss, LossFn
from taskmask.training._early_stopping import EarlyStopping
from taskmask.training._schedule import Schedule
from taskmask.training._trainer import TrainConfig, Trainer

__all__ = ["BatchLoss", "EarlyStopping", "LossFn", "Schedule", "TrainConfig", "Trainer"]
