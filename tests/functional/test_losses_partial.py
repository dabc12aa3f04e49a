"""Missing-label strategies of multilabel tasks (`taskmask.functional`): what each one adds,
that a missing target's value never matters, and the limits where they meet the masked loss."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from taskmask.errors import TaskmaskError
from taskmask.functional import (
    assumed_negative_weights,
    covered_rows,
    expected_positive_binary_cross_entropy_with_logits,
    expected_positive_regularizer,
    masked_binary_cross_entropy_with_logits,
    weak_negative_binary_cross_entropy_with_logits,
)
from taskmask.tasks import Task, task_loss

FAST = settings(max_examples=25, deadline=None)
REDUCTIONS = ("mean", "sum", "none")
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}

seeds = st.integers(min_value=0, max_value=2**32 - 1)
sizes = st.integers(min_value=1, max_value=8)
widths = st.integers(min_value=1, max_value=5)
rates = st.sampled_from([0.0, 0.2, 0.5, 1.0])
gammas = st.sampled_from([0.0, 0.25, 1.0 / 3.0, 0.8, 1.0])


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(
    n: int, k: int, seed: int, rate: float, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, 0/1 targets, ``observed`` with about ``rate`` observed, and a pos_weight."""
    gen = torch.Generator().manual_seed(seed)
    input = torch.randn(n, k, generator=gen, dtype=dtype) * 3
    target = torch.randint(0, 2, (n, k), generator=gen).to(dtype)
    observed = torch.rand(n, k, generator=gen) < rate
    pos_weight = torch.rand(k, generator=gen, dtype=dtype) * 3 + 0.1
    return input, target, observed, pos_weight


def weak(input: torch.Tensor, target: torch.Tensor, observed: torch.Tensor, **kw: Any):
    return weak_negative_binary_cross_entropy_with_logits(input, target, observed, **kw)


def epr(input: torch.Tensor, target: torch.Tensor, observed: torch.Tensor, **kw: Any):
    return expected_positive_binary_cross_entropy_with_logits(input, target, observed, **kw)


def loss_and_grad(fn: Any, input: torch.Tensor, *args: Any, **kw: Any):
    leaf = input.detach().clone().requires_grad_(True)
    loss = fn(leaf, *args, **kw)
    loss.sum().backward()
    assert leaf.grad is not None
    return loss.detach(), leaf.grad


def garbage_like(target: torch.Tensor, observed: torch.Tensor, seed: int, value: float):
    """``target`` with each missing entry replaced by NaN, +inf, -inf, or ``value``."""
    gen = torch.Generator().manual_seed(seed)
    choices = torch.tensor([math.nan, math.inf, -math.inf, value], dtype=target.dtype)
    return torch.where(observed, target, choices[torch.randint(0, 4, target.shape, generator=gen)])


@FAST
@given(n=sizes, k=widths, seed=seeds, rate=rates, gamma=gammas)
def test_covered_rows_and_weights(n: int, k: int, seed: int, rate: float, gamma: float) -> None:
    _, _, observed, _ = make(n, k, seed, rate)
    weights = assumed_negative_weights(observed, gamma)
    covered = covered_rows(observed)
    for i in range(n):
        assert covered[i].item() == bool(observed[i].any())
        for j in range(k):
            expected = 1.0 if observed[i, j] else (gamma if covered[i] else 0.0)
            assert weights[i, j].item() == pytest.approx(expected)


@FAST
@given(n=sizes, k=widths, seed=seeds, rate=rates, use_pos_weight=st.booleans())
def test_weak_negative_with_gamma_zero_is_the_masked_loss(
    n: int, k: int, seed: int, rate: float, use_pos_weight: bool
) -> None:
    input, target, observed, pos_weight = make(n, k, seed, rate)
    options = {"pos_weight": pos_weight if use_pos_weight else None}
    for reduction in REDUCTIONS:
        loss, grad = loss_and_grad(
            weak, input, target, observed, negative_weight=0.0, reduction=reduction, **options
        )
        masked, masked_grad = loss_and_grad(
            masked_binary_cross_entropy_with_logits,
            input,
            target,
            observed,
            reduction=reduction,
            **options,
        )
        assert torch.equal(loss, masked)
        assert torch.equal(grad, masked_grad)


@FAST
@given(n=sizes, k=widths, seed=seeds, rate=rates, use_pos_weight=st.booleans())
def test_negative_is_torch_bce_on_the_filled_targets_of_covered_rows(
    n: int, k: int, seed: int, rate: float, use_pos_weight: bool
) -> None:
    input, target, observed, pos_weight = make(n, k, seed, rate)
    options = {"pos_weight": pos_weight if use_pos_weight else None}
    covered = observed.any(1)
    filled = torch.where(observed, target, 0.0)
    for reduction in REDUCTIONS:
        loss = weak(input, target, observed, negative_weight=1.0, reduction=reduction, **options)
        if reduction == "none":
            plain = F.binary_cross_entropy_with_logits(input, filled, reduction="none", **options)
            torch.testing.assert_close(loss[covered], plain[covered], **TOLERANCE)
            assert (loss[~covered] == 0).all()
        elif covered.any():
            plain = F.binary_cross_entropy_with_logits(
                input[covered], filled[covered], reduction=reduction, **options
            )
            torch.testing.assert_close(loss, plain, **TOLERANCE)
        else:
            assert loss.item() == 0.0


@FAST
@given(n=sizes, k=widths, seed=seeds, gamma=gammas)
def test_gradients_differ_between_strategies_only_by_the_stated_weights(
    n: int, k: int, seed: int, gamma: float
) -> None:
    input, target, observed, pos_weight = make(n, k, seed, 0.5)
    covered = observed.any(1, keepdim=True).expand(n, k)
    common = {"pos_weight": pos_weight, "reduction": "sum"}
    _, g_ignore = loss_and_grad(
        masked_binary_cross_entropy_with_logits, input, target, observed, **common
    )
    _, g_negative = loss_and_grad(weak, input, target, observed, negative_weight=1.0, **common)
    _, g_weak = loss_and_grad(weak, input, target, observed, negative_weight=gamma, **common)
    # observed entries: the very same gradient under every strategy
    assert torch.equal(g_weak[observed], g_ignore[observed])
    assert torch.equal(g_negative[observed], g_ignore[observed])
    # missing entries of covered rows: gamma times the assume-negative gradient
    assumed = covered & ~observed
    torch.testing.assert_close(g_weak[assumed], gamma * g_negative[assumed], **TOLERANCE)
    assert (g_negative[assumed] > 0).all()  # sigmoid(x) - 0 > 0: pushed towards negative
    # rows with nothing observed: nothing, under every strategy
    for grad in (g_ignore, g_negative, g_weak):
        assert torch.equal(grad[~covered], torch.zeros_like(grad[~covered]))


@FAST
@given(n=sizes, k=widths, seed=seeds, rate=rates, gamma=gammas)
def test_weak_negative_mean_divides_by_the_summed_weights(
    n: int, k: int, seed: int, rate: float, gamma: float
) -> None:
    input, target, observed, _ = make(n, k, seed, rate)
    total = weak(input, target, observed, negative_weight=gamma, reduction="sum")
    mean = weak(input, target, observed, negative_weight=gamma, reduction="mean")
    count = int(observed.sum()) + gamma * int((~observed & observed.any(1, keepdim=True)).sum())
    torch.testing.assert_close(mean, total / max(count, 1), **TOLERANCE)


@dataclass(frozen=True)
class Strategy:
    """A missing-label strategy as a loss function with its options."""

    name: str
    fn: Callable[..., torch.Tensor]
    options: dict[str, float] = field(default_factory=dict)
    reductions: tuple[str, ...] = REDUCTIONS


STRATEGIES = [
    Strategy("ignore", masked_binary_cross_entropy_with_logits),
    Strategy("negative", weak, {"negative_weight": 1.0}),
    Strategy("weak_negative", weak, {"negative_weight": 0.3}),
    Strategy("expected_positive", epr, {"expected_positives": 0.7, "weight": 2.0}, ("mean", "sum")),
]
by_strategy = pytest.mark.parametrize("case", STRATEGIES, ids=[c.name for c in STRATEGIES])


@by_strategy
@FAST
@given(
    n=sizes,
    k=widths,
    seed=seeds,
    rate=rates,
    value=st.floats(allow_nan=True, allow_infinity=True),
)
def test_missing_targets_never_matter(
    case: Strategy, n: int, k: int, seed: int, rate: float, value: float
) -> None:
    input, target, observed, pos_weight = make(n, k, seed, rate)
    corrupted = garbage_like(target, observed, seed, value)
    for reduction in case.reductions:
        kw = {**case.options, "pos_weight": pos_weight, "reduction": reduction}
        loss, grad = loss_and_grad(case.fn, input, target, observed, **kw)
        loss_bad, grad_bad = loss_and_grad(case.fn, input, corrupted, observed, **kw)
        assert torch.isfinite(loss_bad).all() and torch.isfinite(grad_bad).all()
        assert torch.equal(loss, loss_bad)
        assert torch.equal(grad, grad_bad)


@by_strategy
@settings(max_examples=15, deadline=None)
@given(n=sizes, k=widths, seed=seeds)
def test_all_missing_gives_an_exact_graph_connected_zero(
    case: Strategy, n: int, k: int, seed: int
) -> None:
    input, _, observed, _ = make(n, k, seed, rate=0.0)
    target = torch.full((n, k), math.nan)
    for reduction in case.reductions:
        leaf = input.clone().requires_grad_(True)
        loss = case.fn(leaf, target, observed, reduction=reduction, **case.options)
        assert loss.requires_grad
        assert (loss == 0.0).all()
        loss.sum().backward()
        assert leaf.grad is not None
        assert torch.equal(leaf.grad, torch.zeros_like(leaf.grad))


@by_strategy
def test_gradcheck_float64_with_missing_entries(case: Strategy) -> None:
    input, target, observed, pos_weight = make(6, 4, seed=5, rate=0.5, dtype=torch.float64)
    observed[0] = False  # one uncovered row
    observed[1, 0], observed[1, 1:] = True, False  # one row with one label observed
    target = target.masked_fill(~observed, math.nan)
    leaf = input.clone().requires_grad_(True)
    for reduction in case.reductions:

        def loss(x: torch.Tensor, reduction: str = reduction) -> torch.Tensor:
            options = {**case.options, "pos_weight": pos_weight, "reduction": reduction}
            return case.fn(x, target, observed, **options)

        assert torch.autograd.gradcheck(loss, (leaf,), eps=1e-6, atol=1e-5, rtol=1e-4)


def epr_by_formula(
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    expected_positives: float,
    weight: float,
) -> torch.Tensor:
    """Cole et al. 2021 written out with Python loops: BCE on observed labels, averaged, plus
    ``weight * ((mean over covered rows of sum_i p_ni - expected) / k) ** 2``."""
    n, k = input.shape
    terms, row_sums = [], []
    for i in range(n):
        if not bool(observed[i].any()):
            continue
        p = torch.sigmoid(input[i])
        row_sums.append(p.sum())
        for j in range(k):
            if observed[i, j]:
                y = float(target[i, j])
                terms.append(-(y * torch.log(p[j]) + (1 - y) * torch.log(1 - p[j])))
    if not terms:
        return input.sum() * 0.0
    k_hat = torch.stack(row_sums).mean()
    return torch.stack(terms).mean() + weight * ((k_hat - expected_positives) / k) ** 2


@FAST
@given(
    n=sizes,
    k=widths,
    seed=seeds,
    rate=st.sampled_from([0.2, 0.5, 1.0]),
    expected=st.floats(min_value=0.05, max_value=1.0),
    weight=st.floats(min_value=0.0, max_value=20.0),
)
def test_expected_positive_matches_autograd_of_the_formula(
    n: int, k: int, seed: int, rate: float, expected: float, weight: float
) -> None:
    input, target, observed, _ = make(n, k, seed, rate, dtype=torch.float64)
    input = input / 3  # moderate logits: the formula's log(sigmoid) is exact enough there
    expected = expected * k
    loss, grad = loss_and_grad(
        epr, input, target, observed, expected_positives=expected, weight=weight
    )
    reference, reference_grad = loss_and_grad(
        epr_by_formula, input, target, observed, expected, weight
    )
    torch.testing.assert_close(loss, reference, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, reference_grad, rtol=1e-9, atol=1e-12)
    total = epr(
        input, target, observed, expected_positives=expected, weight=weight, reduction="sum"
    )
    torch.testing.assert_close(total, loss * int(observed.sum()), rtol=1e-10, atol=1e-12)


@FAST
@given(n=sizes, k=widths, seed=seeds)
def test_regulariser_is_zero_where_the_expected_count_is_met(n: int, k: int, seed: int) -> None:
    input, _, _, _ = make(n, k, seed, rate=1.0, dtype=torch.float64)
    observed = torch.zeros(n, k, dtype=torch.bool)
    observed[:, 0] = True
    k_hat = torch.sigmoid(input).sum(1).mean().item()
    leaf = input.clone().requires_grad_(True)
    penalty = expected_positive_regularizer(leaf, observed, expected_positives=k_hat)
    assert penalty.item() == pytest.approx(0.0, abs=1e-24)
    (grad,) = torch.autograd.grad(penalty, leaf)
    torch.testing.assert_close(grad, torch.zeros_like(grad), rtol=0, atol=1e-12)
    off = expected_positive_regularizer(input, observed, expected_positives=k_hat / 2 + 0.01)
    assert off.item() > 0


def test_regulariser_pinned_value_and_uncovered_rows() -> None:
    input = torch.tensor([[0.0, 0.0, 0.0], [math.log(3.0), 0.0, -math.log(3.0)], [9.0, 9.0, 9.0]])
    observed = torch.tensor([[True, False, False], [False, False, True], [False, False, False]])
    # covered rows: 0 (probs 1/2 each, sum 1.5) and 1 (3/4 + 1/2 + 1/4 = 1.5); row 2 is not
    penalty = expected_positive_regularizer(input, observed, expected_positives=1.0)
    assert penalty.item() == pytest.approx(((1.5 - 1.0) / 3) ** 2)
    leaf = input.clone().requires_grad_(True)
    expected_positive_regularizer(leaf, observed, expected_positives=1.0).backward()
    assert leaf.grad is not None and torch.equal(leaf.grad[2], torch.zeros(3))
    assert (leaf.grad[:2] > 0).all()  # too many expected positives: every probability pushed down


def test_expected_positive_on_observed_positives_is_the_positive_term_alone() -> None:
    input = torch.tensor([[2.0, -1.0, 0.5], [0.3, 1.0, -2.0]])
    target = torch.tensor([[1.0, math.nan, math.nan], [math.nan, math.nan, 1.0]])
    observed = ~target.isnan()
    loss = epr(input, target, observed, expected_positives=1.5, weight=0.0)
    expected = -(F.logsigmoid(torch.tensor(2.0)) + F.logsigmoid(torch.tensor(-2.0))) / 2
    torch.testing.assert_close(loss, expected)


def test_options_are_validated() -> None:
    input, target, observed, _ = make(4, 3, seed=0, rate=0.5)
    with pytest.raises(ValueError, match=r"negative_weight must be in \[0, 1\], got 1.5"):
        weak(input, target, observed, negative_weight=1.5)
    with pytest.raises(ValueError, match=r"expected_positives must be in \(0, 3\]"):
        epr(input, target, observed, expected_positives=4.0)
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
        epr(input, target, observed, expected_positives=1.0, reduction="none")
    with pytest.raises(ValueError, match=r"got \(4, 3\), \(4, 2\), \(4, 3\)"):
        weak(input, target[:, :2], observed)
    with pytest.raises(ValueError, match="observed must be a bool tensor"):
        epr(input, target, observed.float(), expected_positives=1.0)


def ml(strategy: str, **options: Any) -> Task:
    return Task(name="tags", kind="multilabel", missing_labels=strategy, **options)


@FAST
@given(n=sizes, k=st.integers(min_value=2, max_value=5), seed=seeds, rate=rates)
def test_task_loss_strategies_and_their_limits(n: int, k: int, seed: int, rate: float) -> None:
    input, target, observed, pos_weight = make(n, k, seed, rate)

    def term(task: Task) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        leaf = input.clone().requires_grad_(True)
        loss = task_loss(task, leaf, target, observed, pos_weight=pos_weight)
        (grad,) = torch.autograd.grad(loss.mean(), leaf)
        return loss.sum.detach(), loss.count, grad

    ignore = term(ml("ignore"))
    assert ignore[1].item() == int(observed.sum())
    for same, other in [
        (ml("weak_negative", negative_weight=0.0), ignore),
        (ml("weak_negative", negative_weight=1.0), term(ml("negative"))),
    ]:
        for a, b in zip(term(same), other, strict=True):
            assert torch.equal(a, b)
    n_assumed = int((~observed & observed.any(1, keepdim=True)).sum())
    negative = term(ml("negative"))
    assert negative[1].item() == int(observed.sum()) + n_assumed
    default_weak = term(ml("weak_negative"))  # gamma = 1 / (k - 1)
    torch.testing.assert_close(
        default_weak[1], torch.tensor(int(observed.sum()) + n_assumed / (k - 1))
    )
    epr_task = ml("expected_positive", expected_positives=1.0)  # lambda defaults to k
    _, count, _ = term(epr_task)
    assert count.item() == int(observed.sum())
    loss = task_loss(epr_task, input, target, observed, pos_weight=pos_weight)
    direct = epr(
        input, target, observed, expected_positives=1.0, weight=float(k), pos_weight=pos_weight
    )
    torch.testing.assert_close(loss.mean(), direct, **TOLERANCE)


def test_task_loss_names_the_task_when_expected_positives_exceeds_the_labels() -> None:
    task = ml("expected_positive", expected_positives=4.0)  # labels unknown when declared
    input, target, observed, _ = make(5, 3, seed=1, rate=0.5)
    with pytest.raises(TaskmaskError, match=r"task 'tags'.*expected_positives in \(0, 3\]"):
        task_loss(task, input, target, observed)
