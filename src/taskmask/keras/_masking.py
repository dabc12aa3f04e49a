"""Keras 3 imported (an error naming the ``keras`` extra otherwise), and what the losses and
metrics share: which entries are observed, shape checks without broadcasting, filled targets
and per-entry weights."""

from __future__ import annotations

import math
import numbers
from typing import Any

from taskmask.errors import TaskmaskError
from taskmask.tasks._masking import CLASS_SENTINEL

try:
    import keras as keras  # re-exported: importing this module checks that Keras 3 imports
    from keras import ops as ops  # Keras 2 has no ops: an ImportError too
except ImportError as error:
    if error.name is not None and error.name.split(".")[0] == "keras":
        raise TaskmaskError(
            "taskmask.keras needs Keras 3: pip install 'taskmask[keras]'"
        ) from error
    raise TaskmaskError(
        f"Keras could not import its backend ({error}); install it, or set KERAS_BACKEND to an "
        "installed one (jax, tensorflow or torch) before Keras is first imported"
    ) from error

register = keras.saving.register_keras_serializable(package="taskmask")


def checked_mask_value(value: float | None) -> float | None:
    """``None`` (and NaN) mean that only NaN marks a missing label."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TaskmaskError(f"mask_value must be a number or None, got {value!r}")
    return None if math.isnan(value) else float(value)


def observed_mask(y_true: Any, mask_value: float | None = CLASS_SENTINEL) -> Any:
    """Boolean tensor, True where ``y_true`` holds a label: not NaN and not ``mask_value``.

    Example:
        >>> ops.convert_to_numpy(observed_mask([[1.0, -1.0], [float("nan"), 0.0]])).tolist()
        [[True, False], [False, True]]
    """
    y_true = ops.convert_to_tensor(y_true)
    if not keras.backend.is_float_dtype(y_true.dtype):
        y_true = ops.cast(y_true, keras.backend.floatx())
    observed = ops.logical_not(ops.isnan(y_true))
    value = checked_mask_value(mask_value)
    if value is not None:
        observed = ops.logical_and(observed, ops.not_equal(y_true, value))
    return observed


def aligned(y_true: Any, y_pred: Any, what: str) -> tuple[Any, Any]:
    """``y_true`` and ``y_pred`` with one shape: a trailing axis of size 1 on one side only is
    squeezed (``(N, 1)`` against ``(N,)``); any other mismatch is an error, never a broadcast."""
    if len(y_true.shape) == len(y_pred.shape) + 1 and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    elif len(y_pred.shape) == len(y_true.shape) + 1 and y_pred.shape[-1] == 1:
        y_pred = ops.squeeze(y_pred, axis=-1)
    check_shapes(tuple(y_true.shape), tuple(y_pred.shape), what)
    return y_true, y_pred


def check_shapes(true_shape: tuple[Any, ...], pred_shape: tuple[Any, ...], what: str) -> None:
    same = len(true_shape) == len(pred_shape) and all(
        a is None or b is None or a == b for a, b in zip(true_shape, pred_shape, strict=True)
    )
    if not same or not true_shape:
        raise TaskmaskError(
            f"{what}: y_true {true_shape} and y_pred {pred_shape} must have one shape (N, ...), "
            "no broadcasting"
        )


def filled(y_true: Any, observed: Any) -> Any:
    return ops.where(observed, y_true, ops.zeros_like(y_true))


def entry_weights(observed: Any, sample_weight: Any, dtype: str) -> Any:
    """``observed`` as 0/1 times ``sample_weight`` (``(N,)`` or the shape of ``observed``)."""
    weights = ops.cast(observed, dtype)
    if sample_weight is None:
        return weights
    sample_weight = ops.convert_to_tensor(sample_weight, dtype=dtype)
    while len(sample_weight.shape) < len(weights.shape):
        sample_weight = ops.expand_dims(sample_weight, -1)
    return weights * sample_weight


def ratio(numerator: Any, denominator: Any) -> Any:
    """``numerator / denominator``, NaN where the denominator is 0 (undefined, not 0)."""
    defined = denominator > 0
    safe = ops.where(defined, denominator, ops.ones_like(denominator))
    return ops.where(defined, numerator / safe, ops.full_like(numerator, float("nan")))
