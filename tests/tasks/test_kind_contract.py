"""`taskmask.testing.check_kind` over every registered kind (the built-ins, count, a user's
kind with every default and the toy contrastive kind of `test_kinds`), and over broken kinds,
which it must reject naming what they break."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from test_kinds import SPEC as CONTRASTIVE

import taskmask
from taskmask import LossTerm, Task, TaskKindSpec
from taskmask.functional import masked_mse_loss, regression_metrics
from taskmask.tasks import get_kind, known_kinds
from taskmask.tasks.kinds import BUILTIN_SPECS
from taskmask.testing import CHECKED, check_kind


def mse(input: torch.Tensor, target: torch.Tensor, observed: torch.Tensor) -> LossTerm:
    total = masked_mse_loss(input, target, observed, reduction="sum")
    return LossTerm(total, observed.sum().to(total.dtype))


def value_metrics(preds: np.ndarray, target: np.ndarray, observed: np.ndarray) -> dict:
    return regression_metrics(preds, target, observed, names=["v"] * preds.shape[1])


PLAIN = TaskKindSpec(loss=mse, metrics=value_metrics, summary="mae", higher_is_better=False)
USER_KINDS = {"plain": PLAIN, "toy_contrastive": CONTRASTIVE}


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    for name, spec in USER_KINDS.items():
        taskmask.register_kind(name, spec)
    yield
    for name in USER_KINDS:
        taskmask.unregister_kind(name)


def test_the_built_in_kinds_are_registered_specs() -> None:
    assert known_kinds()[:5] == ("binary", "multilabel", "multiclass", "regression", "count")
    assert all(get_kind(name) is spec for name, spec in BUILTIN_SPECS.items())


@pytest.mark.parametrize("kind", [*BUILTIN_SPECS, *USER_KINDS])
@pytest.mark.parametrize("seed", [0, 1])
def test_every_kind_meets_the_contract(kind: str, seed: int) -> None:
    check_kind(get_kind(kind), seed=seed)


@pytest.mark.parametrize(
    "task",
    [
        Task(name="m", kind="multilabel", labels=("a", "b")),
        Task(name="c", kind="multiclass", labels=("x", "y", "z", "w")),
        Task(name="r", kind="regression", n_outputs=2, loss="huber"),
        Task(name="r", kind="regression", loss="l1"),
        Task(name="n", kind="count", n_outputs=4),
        Task(name="b", kind="binary", pos_weight=3.0),
    ],
)
def test_the_contract_holds_with_task_options(task: Task) -> None:
    check_kind(task.spec, task=task)


def test_an_unregistered_spec_is_checked_under_a_temporary_name() -> None:
    spec = TaskKindSpec(loss=mse, metrics=value_metrics, summary="mae", higher_is_better=False)
    check_kind(spec)
    assert CHECKED not in known_kinds()


def _nan_multiplied(input: torch.Tensor, target: torch.Tensor, observed: torch.Tensor) -> LossTerm:
    loss = (input - target) ** 2 * observed  # NaN * 0 is NaN: the trap
    return LossTerm(loss.sum(), observed.sum().to(loss.dtype))


def _all_counted(input: torch.Tensor, target: torch.Tensor, observed: torch.Tensor) -> LossTerm:
    return LossTerm(mse(input, target, observed).sum, torch.tensor(float(observed.numel())))


def _peeking_metrics(preds: np.ndarray, target: np.ndarray, observed: np.ndarray) -> dict:
    return {"mae": float(np.abs(preds - np.nan_to_num(target)).mean())}


def _ungraphed(input: torch.Tensor, target: torch.Tensor, observed: torch.Tensor) -> LossTerm:
    if not observed.any():
        return LossTerm(torch.zeros((), dtype=input.dtype), torch.zeros((), dtype=input.dtype))
    return mse(input, target, observed)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"loss": _nan_multiplied}, "a missing nan changes the loss"),
        ({"loss": _all_counted}, "count is not the observed entries"),
        ({"metrics": _peeking_metrics}, "a missing 1000000.0 changes|missing counts"),
        ({"loss": _ungraphed}, "not connected to the graph"),
        ({"summary": "mse", "higher_is_better": True}, "summary's direction|opposite direction"),
        ({"initial_bias": lambda task, counts, sums: torch.full((3,), math.nan)}, "bias"),
    ],
)
def test_a_broken_kind_fails_the_contract(changes: dict, message: str) -> None:
    fields = {"loss": mse, "metrics": value_metrics, "summary": "mae", "higher_is_better": False}
    spec = TaskKindSpec(**{**fields, **changes})
    with pytest.raises((AssertionError, taskmask.TaskmaskError), match=message):
        check_kind(spec)
    assert CHECKED not in known_kinds()
