"""taskmask: multi-task learning with missing labels.

A missing label adds nothing to the loss, has exactly zero gradient, does not rescale any other
task, and never counts in a metric.
"""

from taskmask._version import __version__
from taskmask.api import FitResult, evaluate, fit
from taskmask.data import MultiTaskData, ParquetSource, make_data
from taskmask.errors import TaskmaskError
from taskmask.functional import EncodedLabels, LossTerm
from taskmask.model import (
    CNN1DConfig,
    CNN2DConfig,
    ConvTrunk,
    MLPConfig,
    MLPTrunk,
    MultiTaskModel,
    PairConfig,
    PairTrunk,
)
from taskmask.persistence import load_model, save_model
from taskmask.predict import TaskPrediction, predict, predictions_frame, tune_thresholds
from taskmask.tasks import (
    Task,
    TaskKindSpec,
    encode_labels,
    register_kind,
    task_loss,
    unregister_kind,
)
from taskmask.training import EarlyStopping, TrainConfig, Trainer

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
