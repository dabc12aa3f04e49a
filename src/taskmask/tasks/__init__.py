"""Tasks and their kinds: `Task`, the kind registry, masking (the only decoder of missing
values), and each task's loss and metrics.
"""

from taskmask.tasks._loss import partial_label_loss, task_loss
from taskmask.tasks._masking import class_names_from, encode_labels, encode_numbers, resolve_task
from taskmask.tasks._metrics import higher_is_better, task_metrics
from taskmask.tasks._task import (
    MissingLabels,
    RegressionLoss,
    Task,
    TaskKind,
    TaskKindSpec,
    check_unique_names,
    declared_width,
    get_kind,
    is_custom,
    known_kinds,
    register_kind,
    unregister_kind,
)

__all__ = [
    "MissingLabels",
    "RegressionLoss",
    "Task",
    "TaskKind",
    "TaskKindSpec",
    "check_unique_names",
    "class_names_from",
    "declared_width",
    "encode_labels",
    "encode_numbers",
    "get_kind",
    "higher_is_better",
    "is_custom",
    "known_kinds",
    "partial_label_loss",
    "register_kind",
    "resolve_task",
    "task_loss",
    "task_metrics",
    "unregister_kind",
]
