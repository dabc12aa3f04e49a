"""Simulated missing labels: hide a fraction of the observed labels of a 0/1 label matrix, for
benchmarks and for checking how a method holds up as labels go missing.

Mechanisms, per column (task or label), applied to the observed entries only:

- ``mcar`` (missing completely at random): each observed label is hidden with probability
  ``rate``;
- ``mnar`` (missing not at random): a positive is twice as likely to be hidden as a negative,
  ``p_pos = min(1, 2 p_neg)``, with ``p_neg`` set so that the column still loses ``rate`` of its
  labels in expectation. The ratio holds up to a rate of ``(1 + pi) / 2`` for a positive rate
  ``pi``; beyond it every positive is hidden and the rest of the rate falls on negatives.

Missing is NaN, as everywhere in taskmask's arrays.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from taskmask.errors import TaskmaskError

Mechanism = Literal["mcar", "mnar"]
MECHANISMS: tuple[str, ...] = ("mcar", "mnar")


def drop_probabilities(y: np.ndarray, rate: float, mechanism: Mechanism) -> tuple[float, float]:
    """``(p_neg, p_pos)``: the probabilities of hiding a negative and a positive of one column
    whose observed labels (0 / 1) are ``y``."""
    if mechanism not in MECHANISMS:
        raise TaskmaskError(f"mechanism must be one of {list(MECHANISMS)}, got {mechanism!r}")
    if not 0.0 <= rate <= 1.0:
        raise TaskmaskError(f"rate must be in [0, 1], got {rate}")
    if mechanism == "mcar" or len(y) == 0:
        return rate, rate
    pi = float(np.mean(y))
    if pi in (0.0, 1.0):
        return rate, rate
    p_neg = rate / (1.0 + pi)  # (1 - pi) p + pi 2p = rate
    if 2 * p_neg <= 1.0:
        return p_neg, 2 * p_neg
    return max(0.0, (rate - pi) / (1.0 - pi)), 1.0


def hide_labels(
    Y: np.ndarray,
    rate: float,
    mechanism: Mechanism = "mcar",
    *,
    rng: np.random.Generator,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """A float copy of the 0/1 label matrix ``Y`` (N, k) (or vector (N,)), NaN where missing,
    with a fraction ``rate`` of the observed labels in ``rows`` (default: all rows) set to NaN,
    per column. Labels outside ``rows`` and labels already missing are left as they are."""
    values = np.asarray(Y, dtype=np.float64)
    matrix = values.reshape(len(values), -1)
    observed = matrix[~np.isnan(matrix)]
    if not np.isin(observed, (0.0, 1.0)).all():
        raise TaskmaskError("hide_labels needs 0/1 labels (NaN for missing)")
    out = matrix.copy()
    rows = np.arange(len(matrix)) if rows is None else np.asarray(rows)
    for j in range(matrix.shape[1]):
        y = matrix[rows, j]
        seen = ~np.isnan(y)
        p_neg, p_pos = drop_probabilities(y[seen], rate, mechanism)
        p = np.where(y == 1, p_pos, p_neg)
        hidden = seen & (rng.random(len(rows)) < p)
        out[rows[hidden], j] = np.nan
    return out.reshape(values.shape)
