"""Tasks and their kinds: `Task`, the kind registry (the built-in kinds in `kinds`, registered
on import), masking (the only decoder of missing values), and each task's loss, metrics,
scores and decisions, read from its kind's spec.
"""

from taskmask.tasks import kinds
from taskmask.tasks._loss import partial_label_loss, task_loss
from taskmask.tasks._masking import (
    CLASS_SENTINEL,
    class_names_from,
    encode_classes,
    encode_flags,
    encode_labels,
    encode_numbers,
    encode_values,
    missing_cells,
    resolve_task,
)
from taskmask.tasks._metrics import higher_is_better, task_metrics
from taskmask.tasks._missing_labels import MissingLabels
from taskmask.tasks._outputs import (
    check_column_names,
    check_prediction_columns,
    initial_bias,
    label_sums,
    named_columns,
    prediction_columns,
    task_decisions,
    task_scores,
)
from taskmask.tasks._registry import register_kind, unregister_kind
from taskmask.tasks._task import (
    RegressionLoss,
    Targets,
    Task,
    TaskKind,
    TaskKindSpec,
    check_unique_names,
    declared_width,
    get_kind,
    indexed_names,
    known_kinds,
)

__all__ = [
    "CLASS_SENTINEL",
    "MissingLabels",
    "RegressionLoss",
    "Targets",
    "Task",
    "TaskKind",
    "TaskKindSpec",
    "check_column_names",
    "check_prediction_columns",
    "check_unique_names",
    "class_names_from",
    "declared_width",
    "encode_classes",
    "encode_flags",
    "encode_labels",
    "encode_numbers",
    "encode_values",
    "get_kind",
    "higher_is_better",
    "indexed_names",
    "initial_bias",
    "kinds",
    "known_kinds",
    "label_sums",
    "missing_cells",
    "named_columns",
    "partial_label_loss",
    "prediction_columns",
    "register_kind",
    "resolve_task",
    "task_decisions",
    "task_loss",
    "task_metrics",
    "task_scores",
    "unregister_kind",
]
