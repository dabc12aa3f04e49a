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

from taskmask.keras._losses import (
    MaskedBinaryCrossentropy,
    MaskedCategoricalCrossentropy,
    MaskedMeanAbsoluteError,
    MaskedMeanSquaredError,
    MaskedSparseCategoricalCrossentropy,
)
from taskmask.keras._masking import observed_mask
from taskmask.keras._metrics import MaskedAUC, MaskedBinaryAccuracy

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
