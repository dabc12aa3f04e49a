"""The masked Keras losses: the mean of the elementwise loss over observed entries."""

from __future__ import annotations

from typing import Any

from taskmask.keras._masking import (
    aligned,
    check_shapes,
    checked_mask_value,
    filled,
    keras,
    observed_mask,
    ops,
    register,
)
from taskmask.tasks._masking import CLASS_SENTINEL


class _MaskedLoss(keras.losses.Loss):  # type: ignore[misc]
    """A loss whose per-output value is the mean over observed entries (module docstring)."""

    def __init__(self, mask_value: float | None, name: str | None) -> None:
        super().__init__(name=name, reduction="sum_over_batch_size")
        self.mask_value = checked_mask_value(mask_value)

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
        y_true, y_pred = aligned(y_true, y_pred, self.name)
        observed = observed_mask(y_true, self.mask_value)
        return filled(y_true, observed), y_pred, observed


class _FromLogitsLoss(_MaskedLoss):
    def __init__(self, mask_value: float | None, from_logits: bool, name: str | None) -> None:
        super().__init__(mask_value, name)
        self.from_logits = bool(from_logits)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "from_logits": self.from_logits}


@register
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
        mask_value: float | None = CLASS_SENTINEL,
        from_logits: bool = False,
        name: str | None = "masked_binary_crossentropy",
    ) -> None:
        super().__init__(mask_value, from_logits, name)

    def elementwise(self, y_true: Any, y_pred: Any) -> tuple[Any, Any]:
        target, y_pred, observed = self._prepared(y_true, y_pred)
        return ops.binary_crossentropy(target, y_pred, from_logits=self.from_logits), observed


@register
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
        mask_value: float | None = CLASS_SENTINEL,
        from_logits: bool = False,
        name: str | None = "masked_categorical_crossentropy",
    ) -> None:
        super().__init__(mask_value, from_logits, name)

    def elementwise(self, y_true: Any, y_pred: Any) -> tuple[Any, Any]:
        check_shapes(tuple(y_true.shape), tuple(y_pred.shape), self.name)
        observed = ops.all(observed_mask(y_true, self.mask_value), axis=-1)  # (N,)
        target = ops.where(ops.expand_dims(observed, -1), y_true, ops.zeros_like(y_true))
        losses = ops.categorical_crossentropy(target, y_pred, from_logits=self.from_logits)
        return losses, observed


@register
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
        mask_value: float | None = CLASS_SENTINEL,
        from_logits: bool = False,
        name: str | None = "masked_sparse_categorical_crossentropy",
    ) -> None:
        super().__init__(mask_value, from_logits, name)

    def elementwise(self, y_true: Any, y_pred: Any) -> tuple[Any, Any]:
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, axis=-1)
        check_shapes((*tuple(y_true.shape), y_pred.shape[-1]), tuple(y_pred.shape), self.name)
        observed = observed_mask(y_true, self.mask_value)
        target = ops.cast(filled(y_true, observed), "int32")
        losses = ops.sparse_categorical_crossentropy(target, y_pred, from_logits=self.from_logits)
        return losses, observed


@register
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


@register
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
