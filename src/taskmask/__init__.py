"""taskmask: multi-task learning with missing labels.

A missing label adds nothing to the loss, has exactly zero gradient, does not rescale any other
task, and never counts in a metric.
"""

from taskmask._version import __version__
from taskmask.api import FitResult, evaluate, fit
from taskmask.data import MultiTaskData, make_data
from taskmask.errors import TaskmaskError
from taskmask.kinds import TaskKindSpec, register_kind, unregister_kind
from taskmask.losses import LossTerm, task_loss
from taskmask.masking import EncodedLabels, encode_labels
from taskmask.model import MultiTaskModel
from taskmask.persistence import load_model, save_model
from taskmask.predict import TaskPrediction, predict, predictions_frame, tune_thresholds
from taskmask.streaming import ParquetSource
from taskmask.tasks import Task
from taskmask.trainer import EarlyStopping, TrainConfig, Trainer
from taskmask.trunks import (
    CNN1DConfig,
    CNN2DConfig,
    ConvTrunk,
    MLPConfig,
    MLPTrunk,
    PairConfig,
    PairTrunk,
)

__all__ = [
    "CNN1DConfig",
    "CNN2DConfig",
    "ConvTrunk",
    "EarlyStopping",
    "EncodedLabels",
    "FitResult",
    "LossTerm",
    "MLPConfig",
    "MLPTrunk",
    "MultiTaskData",
    "MultiTaskModel",
    "PairConfig",
    "PairTrunk",
    "ParquetSource",
    "Task",
    "TaskKindSpec",
    "TaskPrediction",
    "TaskmaskError",
    "TrainConfig",
    "Trainer",
    "__version__",
    "encode_labels",
    "evaluate",
    "fit",
    "load_model",
    "make_data",
    "predict",
    "predictions_frame",
    "register_kind",
    "save_model",
    "task_loss",
    "tune_thresholds",
    "unregister_kind",
]
