"""Auxiliary targets computed from the inputs (seed 004, practice 2).

A generator maps inputs ``(N, C, L)`` (channels x length; ``(N, L)`` is read as one channel)
to regression targets ``(N, k)``. Targets are computed once per data set, never per step, and
are always fully observed. Select built-ins by name in a config; any callable works in Python.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from taskmask.errors import TaskmaskError

TargetGenerator = Callable[[torch.Tensor], torch.Tensor]


def _channels(inputs: torch.Tensor) -> torch.Tensor:
    if inputs.ndim == 2:
        return inputs[:, None, :]
    if inputs.ndim != 3:
        raise TaskmaskError(
            f"auxiliary targets need inputs (N, C, L) or (N, L), got {tuple(inputs.shape)}"
        )
    return inputs


def channel_std(inputs: torch.Tensor) -> torch.Tensor:
    """Standard deviation of each channel over time: ``(N, C)``."""
    return _channels(inputs).double().std(dim=2, correction=0).float()


def sum_abs_changes(inputs: torch.Tensor) -> torch.Tensor:
    """Sum of absolute changes between consecutive samples of each channel: ``(N, C)``."""
    return _channels(inputs).double().diff(dim=2).abs().sum(dim=2).float()


def fourier_magnitudes(inputs: torch.Tensor, *, k: int = 8) -> torch.Tensor:
    """Magnitudes of the first ``k`` non-constant Fourier coefficients of each channel,
    normalised by the length: ``(N, C * k)`` (channel-major)."""
    series = _channels(inputs).double()
    length = series.shape[2]
    if not 1 <= k <= length // 2:
        raise TaskmaskError(f"fourier k must be in 1..{length // 2} for length {length}, got {k}")
    spectrum = torch.fft.rfft(series, dim=2)[:, :, 1 : k + 1].abs() / length
    return spectrum.reshape(len(series), -1).float()


GENERATORS: dict[str, Callable[..., torch.Tensor]] = {
    "std": channel_std,
    "sum_abs_changes": sum_abs_changes,
    "fourier": fourier_magnitudes,
}


def auxiliary_targets(
    inputs: torch.Tensor, generator: str | TargetGenerator, **options: Any
) -> torch.Tensor:
    """Targets ``(N, k)`` from a named generator (``std``, ``sum_abs_changes``, ``fourier``
    with option ``k``) or a callable; checked to be finite and one row per input row."""
    if isinstance(generator, str):
        if generator not in GENERATORS:
            raise TaskmaskError(
                f"unknown auxiliary target generator {generator!r}; choose one of "
                f"{sorted(GENERATORS)}"
            )
        generator_fn: TargetGenerator = lambda x: GENERATORS[generator](x, **options)  # noqa: E731
    else:
        generator_fn = generator
    with torch.no_grad():
        targets = generator_fn(inputs.detach())
    if targets.ndim == 1:
        targets = targets[:, None]
    if targets.ndim != 2 or len(targets) != len(inputs):
        raise TaskmaskError(
            f"an auxiliary target generator must return (N, k) for N={len(inputs)} rows, "
            f"got {tuple(targets.shape)}"
        )
    if not bool(torch.isfinite(targets).all()):
        raise TaskmaskError("auxiliary targets contain NaN or inf")
    return targets.float()
