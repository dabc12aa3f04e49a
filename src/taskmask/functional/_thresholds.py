"""Decision thresholds chosen by an objective, for every label column at once (one sort each).

Objectives (``prob >= t`` is positive, observed entries only):

- ``f1``: the largest F1.
- ``youden``: the largest Youden's J = TPR - FPR (= recall + specificity - 1).
- ``precision:P``: among thresholds reaching precision >= P, the one of best recall (then best
  precision); when none reaches P, the one of best precision.
- ``recall:R``: among thresholds reaching recall >= R, the one of best precision (then best
  recall); when none reaches R (never: the lowest threshold has recall 1), the one of best
  recall.

The candidates are the distinct observed scores; ties go to the smallest threshold. A label
with no observed positive keeps 0.5.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from taskmask.errors import TaskmaskError

OBJECTIVES = ("f1", "youden", "precision:P", "recall:R")
_TOLERANCE = 1e-12


class Objective(NamedTuple):
    """A parsed objective: ``name`` in f1, youden, precision, recall; ``level`` for the last two."""

    name: str
    level: float | None = None


def parse_objective(text: str, *, where: str = "threshold objective") -> Objective:
    """``f1``, ``youden``, ``precision:0.9`` or ``recall:0.8`` as an `Objective`; a
    `TaskmaskError` naming ``where`` otherwise.

    >>> parse_objective("precision:0.9")
    Objective(name='precision', level=0.9)
    """
    name, sep, level = str(text).strip().partition(":")
    if not sep and name in ("f1", "youden"):
        return Objective(name)
    if sep and name in ("precision", "recall"):
        try:
            value = float(level)
        except ValueError:
            value = float("nan")
        if 0.0 < value <= 1.0:
            return Objective(name, value)
    raise TaskmaskError(
        f"{where}: expected one of {list(OBJECTIVES)} (P, R in (0, 1]), got {text!r}"
    )


def _best(primary: torch.Tensor, secondary: torch.Tensor | None) -> torch.Tensor:
    """Per row the last position (the smallest threshold) of the best ``primary``, ties broken
    by ``secondary``; ``-inf`` marks positions that are no candidate."""
    best = primary >= primary.max(1, keepdim=True).values - _TOLERANCE
    if secondary is not None:
        secondary = torch.where(best, secondary, -torch.inf)
        best &= secondary >= secondary.max(1, keepdim=True).values - _TOLERANCE
    position = torch.arange(primary.shape[1], device=primary.device).expand_as(primary)
    return torch.where(best, position, -1).max(1).values


def fit_thresholds_by(
    scores: torch.Tensor, target: torch.Tensor, observed: torch.Tensor, objective: Objective
) -> torch.Tensor:
    """Per column of ``(N, K)`` ``scores`` the threshold that ``objective`` picks (see the
    module docstring); returns ``(K,)`` float64."""
    if scores.shape != target.shape or scores.shape != observed.shape or scores.ndim != 2:
        raise TaskmaskError(
            f"scores, target and observed must share one (N, K) shape, got "
            f"{tuple(scores.shape)}, {tuple(target.shape)}, {tuple(observed.shape)}"
        )
    observed = observed.bool()
    if not bool(torch.isfinite(scores[observed]).all()):
        raise TaskmaskError("observed scores must be finite (NaN or inf found)")
    keyed = torch.where(observed, scores.double(), -torch.inf).T  # (K, N), missing last
    ordered, order = torch.sort(keyed, dim=1, descending=True)
    seen = torch.gather(observed.T, 1, order)
    positive = torch.gather((target.bool() & observed).T, 1, order) & seen
    tp = positive.double().cumsum(1)  # predicted positive: positions 0..i
    fp = (seen & ~positive).double().cumsum(1)
    n_pos, n_neg = tp[:, -1:], fp[:, -1:]
    run_end = torch.cat([ordered[:, :-1] != ordered[:, 1:], torch.ones_like(seen[:, :1])], 1)
    candidate = run_end & seen
    precision = tp / (tp + fp).clamp(min=1)
    recall = tp / n_pos.clamp(min=1)

    def only(values: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        return torch.where(where, values, -torch.inf)

    if objective.name == "f1":
        index = _best(only(2 * tp / (tp + fp + n_pos).clamp(min=1), candidate), None)
    elif objective.name == "youden":
        index = _best(only(recall - fp / n_neg.clamp(min=1), candidate), None)
    else:
        level = float(objective.level or 0.0)
        main, other = (precision, recall) if objective.name == "precision" else (recall, precision)
        reached = candidate & (main >= level - _TOLERANCE)
        fallback = ~reached.any(1, keepdim=True)
        index = torch.where(
            fallback[:, 0],
            _best(only(main, candidate), only(other, candidate)),
            _best(only(other, reached), only(main, reached)),
        )
    chosen = torch.gather(ordered, 1, index.clamp(min=0)[:, None])[:, 0]
    return torch.where(n_pos[:, 0] > 0, chosen, torch.full_like(chosen, 0.5))
