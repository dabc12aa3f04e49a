"""The values of ``Task.missing_labels`` and the options of the single-positive strategies
(``missing_label_options``), checked without a `Task` (`taskmask.tasks._task` calls it)."""

from __future__ import annotations

import math
from typing import Literal

MissingLabels = Literal[
    "ignore",
    "negative",
    "weak_negative",
    "expected_positive",
    "smoothed_negative",
    "entropy_max",
    "large_loss_rejection",
    "asymmetric",
]
PARTIAL_LABEL_OPTIONS: dict[str, dict[str, tuple[float, float]]] = {
    "smoothed_negative": {"epsilon": (0.0, 0.5)},
    "entropy_max": {"alpha": (0.0, math.inf)},
    "large_loss_rejection": {"delta_rel": (0.0, 1.0)},
    "asymmetric": {"gamma_pos": (0.0, math.inf), "gamma_neg": (0.0, math.inf), "clip": (0.0, 1.0)},
}
"""The ``missing_label_options`` each strategy accepts, with their closed ranges; a strategy
not listed takes none."""


def check_partial_label_options(
    where: str, strategy: str, options: dict[str, float] | None
) -> None:
    """``options`` are names `PARTIAL_LABEL_OPTIONS` lists for ``strategy``, each in range."""
    if options is None:
        return
    accepted = PARTIAL_LABEL_OPTIONS.get(strategy, {})
    for name, value in options.items():
        if name not in accepted:
            takes = f"takes {sorted(accepted)}" if accepted else "takes none"
            raise ValueError(
                f"{where}: missing_label_options has {name!r}, but missing_labels={strategy!r} "
                f"{takes}"
            )
        low, high = accepted[name]
        if not low <= value <= high:
            raise ValueError(
                f"{where}: missing_label_options {name}={value} is outside [{low}, {high}] "
                f"(missing_labels={strategy!r})"
            )
