"""The masked Keras metrics: they accumulate over observed entries only; NaN when nothing was
observed."""

from __future__ import annotations

from typing import Any

from taskmask.errors import TaskmaskError
from taskmask.keras._masking import (
    aligned,
    checked_mask_value,
    entry_weights,
    filled,
    keras,
    observed_mask,
    ops,
    ratio,
    register,
)
from taskmask.tasks._masking import CLASS_SENTINEL

_AVERAGES = ("micro", "macro", None)


@register
class MaskedBinaryAccuracy(keras.metrics.Metric):  # type: ignore[misc]
    """Accuracy of ``y_pred >= threshold`` against 0/1 labels, over observed labels only.

    ``average="micro"`` pools every observed entry; ``"macro"`` is the mean of the per-label
    accuracies over labels with at least one observed entry (taskmask's ``accuracy_macro``);
    ``None`` returns the per-label accuracies ``(k,)`` (taskmask's ``accuracy/{label}``).
    A value with nothing observed is NaN. Positive means ``>=`` the threshold, as in taskmask
    (``keras.metrics.BinaryAccuracy`` uses ``>``).

    Example:
        >>> metric = MaskedBinaryAccuracy(average=None)
        >>> metric.update_state([[1.0, -1.0], [0.0, 1.0]], [[0.9, 0.9], [0.6, 0.7]])
        >>> [round(float(v), 2) for v in metric.result()]
        [0.5, 1.0]
    """

    def __init__(
        self,
        mask_value: float | None = CLASS_SENTINEL,
        threshold: float = 0.5,
        average: str | None = "micro",
        name: str = "masked_binary_accuracy",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, dtype=dtype)
        if average not in _AVERAGES:
            raise TaskmaskError(f"average must be one of {list(_AVERAGES)}, got {average!r}")
        if not 0.0 <= float(threshold) <= 1.0:
            raise TaskmaskError(f"threshold must lie in [0, 1], got {threshold!r}")
        self.mask_value = checked_mask_value(mask_value)
        self.threshold = float(threshold)
        self.average = average
        self._state_built = False

    def _build_state(self, n_labels: int) -> None:
        def zeros(name: str) -> Any:
            return self.add_variable(shape=(n_labels,), initializer="zeros", name=name)

        self.correct = zeros("correct")  # (k,) weighted count of right predictions
        self.count = zeros("count")  # (k,) weighted count of observed labels
        self._state_built = True

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        y_true, y_pred = aligned(y_true, y_pred, self.name)
        if len(y_pred.shape) == 1:
            y_true, y_pred = ops.expand_dims(y_true, -1), ops.expand_dims(y_pred, -1)
        if not self._state_built:
            self._build_state(int(y_pred.shape[-1]))
        observed = observed_mask(y_true, self.mask_value)
        weights = entry_weights(observed, sample_weight, self.dtype)
        right = ops.equal(ops.cast(y_pred >= self.threshold, self.dtype), y_true)
        axes = tuple(range(len(y_pred.shape) - 1))  # all but the label axis
        self.correct.assign(self.correct + ops.sum(ops.cast(right, self.dtype) * weights, axes))
        self.count.assign(self.count + ops.sum(weights, axis=axes))

    def result(self) -> Any:
        if not self._state_built:
            return ops.convert_to_tensor(float("nan"), dtype=self.dtype)
        if self.average == "micro":
            return ratio(ops.sum(self.correct), ops.sum(self.count))
        per_label = ratio(self.correct, self.count)
        if self.average is None:
            return per_label
        defined = self.count > 0
        total = ops.sum(ops.where(defined, per_label, ops.zeros_like(per_label)))
        return ratio(total, ops.sum(ops.cast(defined, self.dtype)))

    def reset_state(self) -> None:
        if self._state_built:
            self.correct.assign(ops.zeros_like(self.correct))
            self.count.assign(ops.zeros_like(self.count))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "mask_value": self.mask_value,
            "threshold": self.threshold,
            "average": self.average,
        }


@register
class MaskedAUC(keras.metrics.AUC):  # type: ignore[misc]
    """`keras.metrics.AUC` over observed labels only: missing entries get sample weight 0.

    Every option of `keras.metrics.AUC` applies. ``multi_label=True`` averages per-label AUCs
    (taskmask's ``roc_auc_macro`` where every label has both classes observed); the default
    pools all observed entries. Keras computes AUC on ``num_thresholds`` fixed thresholds, an
    approximation of scikit-learn's exact value that tightens as ``num_thresholds`` grows.

    Example:
        >>> metric = MaskedAUC()
        >>> metric.update_state([1.0, 0.0, -1.0, 1.0], [0.8, 0.3, 0.9, 0.6])
        >>> float(metric.result())
        1.0
    """

    def __init__(self, mask_value: float | None = CLASS_SENTINEL, **kwargs: Any) -> None:
        kwargs.setdefault("name", "masked_auc")
        super().__init__(**kwargs)
        self.mask_value = checked_mask_value(mask_value)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        y_true, y_pred = aligned(y_true, y_pred, self.name)
        observed = observed_mask(y_true, self.mask_value)
        weights = entry_weights(observed, sample_weight, self.dtype)
        super().update_state(filled(y_true, observed), y_pred, sample_weight=weights)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mask_value": self.mask_value}
