"""Masked losses and metrics for Keras 3 models on any backend (`pip install taskmask[keras]`).

They carry taskmask's semantics into a Keras multi-output model:

- a label is missing where its target is NaN or ``mask_value`` (-1 by default for class
  labels, as in seed 000; regression losses default to NaN only, since -1 is a real value);
- a loss is the mean of the elementwise loss over the output's *observed* entries, not over the
  batch; a batch with nothing observed for an output adds exactly 0, with zero gradients;
- a missing entry adds nothing and gets exactly zero gradient, whatever its target holds:
  targets are filled before the loss is computed and the loss is selected with ``where``;
- metrics accumulate over observed entries only; a value with nothing observed is NaN (taskmask's
  `taskmask.functional.Undefined`), never a made-up 0.

Keras sums the outputs' losses with ``loss_weights``, as taskmask's static weighting does, so a
model compiled with one masked loss per output trains as taskmask would. Only ``keras.ops`` is
used; the backend is whatever Keras was imported with (``KERAS_BACKEND``), never set here.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from taskmask.errors import TaskmaskError

try:
    import keras
    from keras import ops  # Keras 2 has no ops: an ImportError too
except ImportError as error:
    if error.name is not None and error.name.split(".")[0] == "keras":
        raise TaskmaskError(
            "taskmask.keras needs Keras 3: pip install 'taskmask[keras]'"
        ) from error
    raise TaskmaskError(
        f"Keras could not import its backend ({error}); install it, or set KERAS_BACKEND to an "
        "installed one (jax, tensorflow or torch) before Keras is first imported"
    ) from error

__all__ = [
    "MaskedAUC",
    "MaskedBinaryAccuracy",
    "MaskedBinaryCrossentropy",
    "MaskedCategoricalCrossentropy",
    "MaskedMeanAbsoluteError",
    "MaskedMeanSquaredError",
    "MaskedSparseCategoricalCrossentropy",
    "observed_mask",
]

_register = keras.saving.register_keras_serializable(package="taskmask")
_AVERAGES = ("micro", "macro", None)


def _mask_value(value: float | None) -> float | None:
    """``None`` (and NaN) mean that only NaN marks a missing label."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TaskmaskError(f"mask_value must be a number or None, got {value!r}")
    return None if math.isnan(value) else float(value)


def observed_mask(y_true: Any, mask_value: float | None = -1.0) -> Any:
    """Boolean tensor, True where ``y_true`` holds a label: not NaN and not ``mask_value``.

    Example:
        >>> ops.convert_to_numpy(observed_mask([[1.0, -1.0], [float("nan"), 0.0]])).tolist()
        [[True, False], [False, True]]
    """
    y_true = ops.convert_to_tensor(y_true)
    if not keras.backend.is_float_dtype(y_true.dtype):
        y_true = ops.cast(y_true, keras.backend.floatx())
    observed = ops.logical_not(ops.isnan(y_true))
    value = _mask_value(mask_value)
    if value is not None:
        observed = ops.logical_and(observed, ops.not_equal(y_true, value))
    return observed


def _aligned(y_true: Any, y_pred: Any, what: str) -> tuple[Any, Any]:
    """``y_true`` and ``y_pred`` with one shape: a trailing axis of size 1 on one side only is
    squeezed (``(N, 1)`` against ``(N,)``); any other mismatch is an error, never a broadcast."""
    if len(y_true.shape) == len(y_pred.shape) + 1 and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    elif len(y_pred.shape) == len(y_true.shape) + 1 and y_pred.shape[-1] == 1:
        y_pred = ops.squeeze(y_pred, axis=-1)
    _check_shapes(tuple(y_true.shape), tuple(y_pred.shape), what)
    return y_true, y_pred


def _check_shapes(true_shape: tuple[Any, ...], pred_shape: tuple[Any, ...], what: str) -> None:
    same = len(true_shape) == len(pred_shape) and all(
        a is None or b is None or a == b for a, b in zip(true_shape, pred_shape, strict=True)
    )
    if not same or not true_shape:
        raise TaskmaskError(
            f"{what}: y_true {true_shape} and y_pred {pred_shape} must have one shape (N, ...), "
            "no broadcasting"
        )


def _filled(y_true: Any, observed: Any) -> Any:
    return ops.where(observed, y_true, ops.zeros_like(y_true))


class _MaskedLoss(keras.losses.Loss):  # type: ignore[misc]
    """A loss whose per-output value is the mean over observed entries (module docstring)."""

    def __init__(self, mask_value: float | None, name: str | None) -> None:
        super().__init__(name=name, reduction="sum_over_batch_size")
        self.mask_value = _mask_value(mask_value)

    def elementwise(self, y_true: Any, y_pred: Any) -> tuple[Any, Any]:
        """The loss of each entry and the observed mask, one shape ``(N, ...)``."""
        raise NotImplementedError

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """Per sample ``(N,)``: its summed observed loss times ``N / n_observed``.

        ``Loss.__call__`` then averages over the batch ("sum_over_batch_size"), which gives the
        mean over observed entries; a ``sample_weight`` scales each sample's share, the divisor
        stays the observed count. Under ``tf.distribute`` each replica uses its own count.
        """
        y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        losses, observed = self.elementwise(y_true, y_pred)
        kept = ops.where(observed, losses, ops.zeros_like(losses))  # never loss * mask
        rows = ops.sum(kept, axis=tuple(range(1, len(kept.shape)))) if len(kept.shape) > 1 else kept
        n_observed = ops.sum(ops.cast(observed, kept.dtype))
        batch = ops.cast(ops.shape(rows)[0], kept.dtype)
        return rows * (batch / ops.maximum(n_observed, 1.0))  # (N,): batch mean = observed mean

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "mask_value": self.mask_value}

    def _prepared(self, y_true: Any, y_pred: Any) -> tuple[Any, Any, Any]:
        """Filled targets, predictions and the observed mask, for targets shaped as ``y_pred``."""
        y_true, y_pred = _aligned(y_true, y_pred, self.name)
        observed = observed_mask(y_true, self.mask_value)
        return _filled(y_true, observed), y_pred, observed


class _FromLogitsLoss(_MaskedLoss):
    def __init__(self, mask_value: float | None, from_logits: bool, name: str | None) -> None:
        super().__init__(mask_value, name)
        self.from_logits = bool(from_logits)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "from_logits": self.from_logits}


@_register
class MaskedBinaryCrossentropy(_FromLogitsLoss):
    """Binary cross entropy averaged over observed labels; targets 0/1, missing = ``mask_value``.

    ``y_pred`` holds probabilities (Keras clips them to ``[1e-7, 1 - 1e-7]``) or, with
    ``from_logits=True``, logits. ``y_true`` and ``y_pred`` have one shape ``(N, k)``.

    Example:
        >>> loss = MaskedBinaryCrossentropy()
        >>> y_true = [[1.0, -1.0], [0.0, -1.0]]  # the second label is missing in both rows
        >>> y_pred = [[0.5, 0.9], [0.5, 0.1]]
        >>> round(float(loss(y_true, y_pred)), 4)  # log 2, the mean over the 2 observed labels
        0.6931
    """

    def __init__(
        self,
        mask_value: float | None = -1.0,
        from_logits: bool = False,
        name: str | None = "masked_binary_crossentropy",
    ) -> None:
        super().__init__(mask_value, from_logits, name)

    def elementwise(self, y_true: Any, y_pred: Any) -> tuple[Any, Any]:
        target, y_pred, observed = self._prepared(y_true, y_pred)
        return ops.binary_crossentropy(target, y_pred, from_logits=self.from_logits), observed


@_register
class MaskedCategoricalCrossentropy(_FromLogitsLoss):
    """Categorical cross entropy averaged over observed rows; one-hot ``y_true`` ``(N, C)``.

    A row is missing when any of its entries is NaN or ``mask_value`` (usually all are).
    ``y_pred`` holds probabilities or, with ``from_logits=True``, logits.

    Example:
        >>> loss = MaskedCategoricalCrossentropy()
        >>> y_true = [[0.0, 1.0], [-1.0, -1.0]]  # the second row is missing
        >>> round(float(loss(y_true, [[0.5, 0.5], [0.9, 0.1]])), 4)
        0.6931
    """

    def __init__(
        self,
        mask_value: float | None = -1.0,
        from_logits: bool = False,
        name: str | None = "masked_categorical_crossentropy",
    ) -> None:
        super().__init__(mask_value, from_logits, name)

    def elementwise(self, y_true: Any, y_pred: Any) -> tuple[Any, Any]:
        _check_shapes(tuple(y_true.shape), tuple(y_pred.shape), self.name)
        observed = ops.all(observed_mask(y_true, self.mask_value), axis=-1)  # (N,)
        filled = ops.where(ops.expand_dims(observed, -1), y_true, ops.zeros_like(y_true))
        losses = ops.categorical_crossentropy(filled, y_pred, from_logits=self.from_logits)
        return losses, observed


@_register
class MaskedSparseCategoricalCrossentropy(_FromLogitsLoss):
    """Cross entropy averaged over observed rows; class indices ``y_true`` ``(N,)`` or ``(N, 1)``.

    ``y_pred`` ``(N, C)`` holds probabilities or, with ``from_logits=True``, logits.

    Example:
        >>> loss = MaskedSparseCategoricalCrossentropy()
        >>> round(float(loss([1, -1], [[0.5, 0.5], [0.9, 0.1]])), 4)  # row 2 is missing
        0.6931
    """

    def __init__(
        self,
        mask_value: float | None = -1.0,
        from_logits: bool = False,
        name: str | None = "masked_sparse_categorical_crossentropy",
    ) -> None:
        super().__init__(mask_value, from_logits, name)

    def elementwise(self, y_true: Any, y_pred: Any) -> tuple[Any, Any]:
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, axis=-1)
        _check_shapes((*tuple(y_true.shape), y_pred.shape[-1]), tuple(y_pred.shape), self.name)
        observed = observed_mask(y_true, self.mask_value)
        target = ops.cast(_filled(y_true, observed), "int32")
        losses = ops.sparse_categorical_crossentropy(target, y_pred, from_logits=self.from_logits)
        return losses, observed


@_register
class MaskedMeanSquaredError(_MaskedLoss):
    """Squared error averaged over observed entries of ``(N, k)`` targets; NaN is missing.

    Example:
        >>> loss = MaskedMeanSquaredError()
        >>> round(float(loss([[1.0, float("nan")], [3.0, 0.0]], [[2.0, 7.0], [3.0, 2.0]])), 4)
        1.6667
    """

    def __init__(
        self, mask_value: float | None = None, name: str | None = "masked_mean_squared_error"
    ) -> None:
        super().__init__(mask_value, name)

    def elementwise(self, y_true: Any, y_pred: Any) -> tuple[Any, Any]:
        target, y_pred, observed = self._prepared(y_true, y_pred)
        return ops.square(y_pred - target), observed


@_register
class MaskedMeanAbsoluteError(_MaskedLoss):
    """Absolute error averaged over observed entries of ``(N, k)`` targets; NaN is missing.

    Example:
        >>> loss = MaskedMeanAbsoluteError(mask_value=-999)
        >>> float(loss([[1.0, -999.0], [3.0, 0.0]], [[2.0, 7.0], [3.0, 2.0]]))
        1.0
    """

    def __init__(
        self, mask_value: float | None = None, name: str | None = "masked_mean_absolute_error"
    ) -> None:
        super().__init__(mask_value, name)

    def elementwise(self, y_true: Any, y_pred: Any) -> tuple[Any, Any]:
        target, y_pred, observed = self._prepared(y_true, y_pred)
        return ops.abs(y_pred - target), observed


def _entry_weights(observed: Any, sample_weight: Any, dtype: str) -> Any:
    """``observed`` as 0/1 times ``sample_weight`` (``(N,)`` or the shape of ``observed``)."""
    weights = ops.cast(observed, dtype)
    if sample_weight is None:
        return weights
    sample_weight = ops.convert_to_tensor(sample_weight, dtype=dtype)
    while len(sample_weight.shape) < len(weights.shape):
        sample_weight = ops.expand_dims(sample_weight, -1)
    return weights * sample_weight


def _ratio(numerator: Any, denominator: Any) -> Any:
    """``numerator / denominator``, NaN where the denominator is 0 (undefined, not 0)."""
    defined = denominator > 0
    safe = ops.where(defined, denominator, ops.ones_like(denominator))
    return ops.where(defined, numerator / safe, ops.full_like(numerator, float("nan")))


@_register
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
        mask_value: float | None = -1.0,
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
        self.mask_value = _mask_value(mask_value)
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
        y_true, y_pred = _aligned(y_true, y_pred, self.name)
        if len(y_pred.shape) == 1:
            y_true, y_pred = ops.expand_dims(y_true, -1), ops.expand_dims(y_pred, -1)
        if not self._state_built:
            self._build_state(int(y_pred.shape[-1]))
        observed = observed_mask(y_true, self.mask_value)
        weights = _entry_weights(observed, sample_weight, self.dtype)
        right = ops.equal(ops.cast(y_pred >= self.threshold, self.dtype), y_true)
        axes = tuple(range(len(y_pred.shape) - 1))  # all but the label axis
        self.correct.assign(self.correct + ops.sum(ops.cast(right, self.dtype) * weights, axes))
        self.count.assign(self.count + ops.sum(weights, axis=axes))

    def result(self) -> Any:
        if not self._state_built:
            return ops.convert_to_tensor(float("nan"), dtype=self.dtype)
        if self.average == "micro":
            return _ratio(ops.sum(self.correct), ops.sum(self.count))
        per_label = _ratio(self.correct, self.count)
        if self.average is None:
            return per_label
        defined = self.count > 0
        total = ops.sum(ops.where(defined, per_label, ops.zeros_like(per_label)))
        return _ratio(total, ops.sum(ops.cast(defined, self.dtype)))

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


@_register
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

    def __init__(self, mask_value: float | None = -1.0, **kwargs: Any) -> None:
        kwargs.setdefault("name", "masked_auc")
        super().__init__(**kwargs)
        self.mask_value = _mask_value(mask_value)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        y_true, y_pred = _aligned(y_true, y_pred, self.name)
        observed = observed_mask(y_true, self.mask_value)
        weights = _entry_weights(observed, sample_weight, self.dtype)
        super().update_state(_filled(y_true, observed), y_pred, sample_weight=weights)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mask_value": self.mask_value}
