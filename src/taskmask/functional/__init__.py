"""Pure masked losses and metrics on tensors and arrays: they know ``observed``, not tasks.

A missing entry (``observed == False``) adds nothing to a loss, gets exactly zero gradient and
never counts in a metric, whatever its target holds.
"""

from taskmask.functional._labels import EncodedLabels
from taskmask.functional._losses import (
    LossTerm,
    Reduction,
    balanced_pos_weight,
    masked_binary_cross_entropy_with_logits,
    masked_cross_entropy,
    masked_huber_loss,
    masked_l1_loss,
    masked_mse_loss,
    masked_poisson_nll_loss,
)
from taskmask.functional._metrics import (
    Array,
    MetricValue,
    Undefined,
    binary_metrics,
    count_metrics,
    fit_thresholds,
    metric_as_float,
    multiclass_metrics,
    multilabel_metrics,
    regression_metrics,
    summary_keys,
    to_jsonable,
)
from taskmask.functional._partial import (
    assumed_negative_weights,
    covered_rows,
    expected_positive_binary_cross_entropy_with_logits,
    expected_positive_regularizer,
    weak_negative_binary_cross_entropy_with_logits,
)
from taskmask.functional._single_positive import (
    assume_negative_label_smoothing_bce_with_logits,
    asymmetric_loss_with_logits,
    binary_entropy_with_logits,
    entropy_maximization_loss,
    large_loss_rejection_bce_with_logits,
    large_loss_rejection_rate,
    rejected_labels,
    single_positive_loss_term,
)

__all__ = [
    "Array",
    "EncodedLabels",
    "LossTerm",
    "MetricValue",
    "Reduction",
    "Undefined",
    "assume_negative_label_smoothing_bce_with_logits",
    "assumed_negative_weights",
    "asymmetric_loss_with_logits",
    "balanced_pos_weight",
    "binary_entropy_with_logits",
    "binary_metrics",
    "count_metrics",
    "covered_rows",
    "entropy_maximization_loss",
    "expected_positive_binary_cross_entropy_with_logits",
    "expected_positive_regularizer",
    "fit_thresholds",
    "large_loss_rejection_bce_with_logits",
    "large_loss_rejection_rate",
    "masked_binary_cross_entropy_with_logits",
    "masked_cross_entropy",
    "masked_huber_loss",
    "masked_l1_loss",
    "masked_mse_loss",
    "masked_poisson_nll_loss",
    "metric_as_float",
    "multiclass_metrics",
    "multilabel_metrics",
    "regression_metrics",
    "rejected_labels",
    "single_positive_loss_term",
    "summary_keys",
    "to_jsonable",
    "weak_negative_binary_cross_entropy_with_logits",
]
