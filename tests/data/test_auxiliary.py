import numpy as np
import pytest
import torch

from taskmask.data.auxiliary import (
    auxiliary_targets,
    channel_std,
    fourier_magnitudes,
    sum_abs_changes,
)
from taskmask.errors import TaskmaskError


def _series() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 32, generator=generator)


def test_std_and_sum_of_absolute_changes_match_numpy() -> None:
    x = _series()
    array = x.double().numpy()
    np.testing.assert_allclose(channel_std(x).numpy(), array.std(axis=2), rtol=1e-6)
    expected = np.abs(np.diff(array, axis=2)).sum(axis=2)
    np.testing.assert_allclose(sum_abs_changes(x).numpy(), expected, rtol=1e-6)


def test_fourier_magnitudes_find_a_pure_tone() -> None:
    t = torch.arange(64, dtype=torch.float64)
    tone = torch.cos(2 * torch.pi * 3 * t / 64)[None, :]  # (1, 64): one channel
    magnitudes = fourier_magnitudes(tone, k=5)[0]
    assert magnitudes.shape == (5,)
    assert magnitudes[2].item() == pytest.approx(0.5, abs=1e-6)
    assert magnitudes[[0, 1, 3, 4]].abs().max().item() < 1e-6


def test_fourier_layout_is_channel_major() -> None:
    x = _series()
    both = fourier_magnitudes(x, k=4)
    first = fourier_magnitudes(x[:, :1], k=4)
    assert both.shape == (4, 12)
    torch.testing.assert_close(both[:, :4], first)


def test_named_and_callable_generators_give_n_by_k_targets() -> None:
    x = _series()
    torch.testing.assert_close(auxiliary_targets(x, "std"), channel_std(x))
    assert auxiliary_targets(x, "fourier", k=2).shape == (4, 6)
    assert auxiliary_targets(x, lambda s: s.mean(dim=(1, 2))).shape == (4, 1)


@pytest.mark.parametrize(
    ("generator", "message"),
    [
        ("kurtosis", "unknown auxiliary target generator 'kurtosis'"),
        (lambda s: s[:2, 0, 0], "must return \\(N, k\\) for N=4"),
        (lambda s: s.mean(dim=2) / 0.0 * 0.0, "NaN or inf"),
    ],
)
def test_bad_generators_raise(generator, message: str) -> None:
    with pytest.raises(TaskmaskError, match=message):
        auxiliary_targets(_series(), generator)


def test_bad_shapes_and_k_raise() -> None:
    with pytest.raises(TaskmaskError, match="inputs \\(N, C, L\\)"):
        channel_std(torch.zeros(2, 2, 2, 2))
    with pytest.raises(TaskmaskError, match=r"fourier k must be in 1\.\.16"):
        fourier_magnitudes(_series(), k=17)
