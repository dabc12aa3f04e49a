"""Single-positive losses (`taskmask.functional`: AN-LS, EM, LL-R, ASL): the masked-loss
contract of the core losses, each against a reference written out here, and their limits."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from taskmask.errors import TaskmaskError
from taskmask.functional import (
    assume_negative_label_smoothing_bce_with_logits,
    asymmetric_loss_with_logits,
    binary_entropy_with_logits,
    entropy_maximization_loss,
    large_loss_rejection_bce_with_logits,
    large_loss_rejection_rate,
    masked_binary_cross_entropy_with_logits,
    rejected_labels,
    single_positive_loss_term,
    weak_negative_binary_cross_entropy_with_logits,
)

FAST = settings(max_examples=25, deadline=None)
REDUCTIONS = ("mean", "sum", "none")

seeds = st.integers(min_value=0, max_value=2**32 - 1)
sizes = st.integers(min_value=1, max_value=8)
widths = st.integers(min_value=1, max_value=5)
rates = st.sampled_from([0.0, 0.2, 0.5, 1.0])


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


@dataclass(frozen=True)
class Loss:
    """A single-positive loss with its options; ``pos_weight``: whether it takes one."""

    name: str
    fn: Callable[..., torch.Tensor]
    options: dict[str, Any] = field(default_factory=dict)
    pos_weight: bool = True

    def __call__(self, input: torch.Tensor, target: torch.Tensor, observed: torch.Tensor, **kw):
        return self.fn(input, target, observed, **{**self.options, **kw})

    def with_weight(self, pos_weight: torch.Tensor) -> dict[str, Any]:
        return {"pos_weight": pos_weight} if self.pos_weight else {}


LOSSES = [
    Loss("an_ls", assume_negative_label_smoothing_bce_with_logits, {"epsilon": 0.1}),
    Loss("em", entropy_maximization_loss, {"alpha": 0.3}),
    Loss("ll_r", large_loss_rejection_bce_with_logits, {"rejection_rate": 0.4}),
    Loss("asl", asymmetric_loss_with_logits, pos_weight=False),
    Loss(
        "asl_assume_negative",
        asymmetric_loss_with_logits,
        {"assume_negative": True, "gamma_pos": 1.0},
        pos_weight=False,
    ),
]
by_loss = pytest.mark.parametrize("case", LOSSES, ids=[c.name for c in LOSSES])


@by_loss
@FAST
@given(
    n=sizes,
    k=widths,
    seed=seeds,
    rate=rates,
    value=st.floats(allow_nan=True, allow_infinity=True),
)
def test_missing_targets_never_matter(
    case: Loss, n: int, k: int, seed: int, rate: float, value: float
) -> None:
    input, target, observed, pos_weight = make(n, k, seed, rate)
    corrupted = garbage_like(target, observed, seed, value)
    for reduction in REDUCTIONS:
        kw = {**case.with_weight(pos_weight), "reduction": reduction}
        loss, grad = loss_and_grad(case, input, target, observed, **kw)
        loss_bad, grad_bad = loss_and_grad(case, input, corrupted, observed, **kw)
        assert torch.isfinite(loss_bad).all() and torch.isfinite(grad_bad).all()
        assert torch.equal(loss, loss_bad)
        assert torch.equal(grad, grad_bad)


@by_loss
@FAST
@given(n=sizes, k=widths, seed=seeds, extra=st.integers(min_value=1, max_value=4))
def test_rows_with_nothing_observed_add_exactly_nothing(
    case: Loss, n: int, k: int, seed: int, extra: int
) -> None:
    input, target, observed, pos_weight = make(n, k, seed, 0.5, dtype=torch.float64)
    more_input, _, _, _ = make(extra, k, seed + 1, 0.0, dtype=torch.float64)
    all_input = torch.cat([input, more_input])
    all_target = torch.cat([target, torch.full((extra, k), math.nan, dtype=torch.float64)])
    all_observed = torch.cat([observed, torch.zeros(extra, k, dtype=torch.bool)])
    for reduction in REDUCTIONS:
        kw = {**case.with_weight(pos_weight), "reduction": reduction}
        loss, grad = loss_and_grad(case, input, target, observed, **kw)
        more, more_grad = loss_and_grad(case, all_input, all_target, all_observed, **kw)
        assert torch.equal(more_grad[n:], torch.zeros(extra, k, dtype=torch.float64))
        torch.testing.assert_close(more_grad[:n], grad, rtol=1e-10, atol=1e-14)
        if reduction == "none":
            assert torch.equal(more[n:], torch.zeros(extra, k, dtype=torch.float64))
            more = more[:n]
        # not bitwise: a longer tensor may take another vectorised path through sigmoid and pow
        torch.testing.assert_close(more, loss, rtol=1e-10, atol=1e-14)


@by_loss
@settings(max_examples=15, deadline=None)
@given(n=sizes, k=widths, seed=seeds)
def test_all_missing_gives_an_exact_graph_connected_zero(
    case: Loss, n: int, k: int, seed: int
) -> None:
    input, _, observed, _ = make(n, k, seed, rate=0.0)
    target = torch.full((n, k), math.nan)
    for reduction in REDUCTIONS:
        leaf = input.clone().requires_grad_(True)
        loss = case(leaf, target, observed, reduction=reduction)
        assert loss.requires_grad
        assert (loss == 0.0).all()
        loss.sum().backward()
        assert leaf.grad is not None
        assert torch.equal(leaf.grad, torch.zeros_like(leaf.grad))


@by_loss
def test_gradcheck_float64_with_missing_entries(case: Loss) -> None:
    input, target, observed, pos_weight = make(6, 4, seed=5, rate=0.5, dtype=torch.float64)
    observed[0] = False  # one uncovered row
    observed[1, 0], observed[1, 1:] = True, False  # one row with one label observed
    target = target.masked_fill(~observed, math.nan)
    leaf = input.clone().requires_grad_(True)
    for reduction in REDUCTIONS:

        def loss(x: torch.Tensor, reduction: str = reduction) -> torch.Tensor:
            options = {**case.with_weight(pos_weight), "reduction": reduction}
            return case(x, target, observed, **options)

        assert torch.autograd.gradcheck(loss, (leaf,), eps=1e-6, atol=1e-5, rtol=1e-4)


@by_loss
@FAST
@given(n=sizes, k=widths, seed=seeds, rate=rates)
def test_loss_term_is_the_sum_and_the_count_of_the_mean(
    case: Loss, n: int, k: int, seed: int, rate: float
) -> None:
    input, target, observed, pos_weight = make(n, k, seed, rate)
    options = {**case.options, **case.with_weight(pos_weight)}
    term = single_positive_loss_term(case.fn, input, target, observed, **options)
    assert torch.equal(term.sum, case(input, target, observed, reduction="sum", **options))
    mean = case(input, target, observed, reduction="mean", **options)
    assert torch.equal(term.mean(), mean)
    covered = int(observed.any(1).sum()) * k
    n_assumed = covered - int(observed.sum())
    expected = {  # the counts the module docstring states
        "an_ls": covered,
        "em": covered,
        "ll_r": covered - math.ceil(Fraction(2, 5) * n_assumed),  # rejection_rate 0.4
        "asl": int(observed.sum()),
        "asl_assume_negative": covered,
    }[case.name]
    assert term.count.item() == expected


def test_loss_term_defaults_are_the_functions_defaults() -> None:
    input, target, observed, _ = make(6, 4, seed=3, rate=0.4)
    for fn in (
        assume_negative_label_smoothing_bce_with_logits,
        entropy_maximization_loss,
        asymmetric_loss_with_logits,
    ):
        term = single_positive_loss_term(fn, input, target, observed)
        assert torch.equal(term.sum, fn(input, target, observed, reduction="sum"))
    with pytest.raises(TaskmaskError, match=r"loss must be one of .*entropy_maximization_loss"):
        single_positive_loss_term(masked_binary_cross_entropy_with_logits, input, target, observed)


# References, one entry at a time with Python loops; each returns (sum, count).


def _log_p(x: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.sigmoid(x))


def _log_q(x: torch.Tensor) -> torch.Tensor:
    return torch.log(1 - torch.sigmoid(x))


def an_ls_by_formula(input, target, observed, epsilon, pos_weight):
    """Cole et al.: unannotated labels of covered rows are 0, then y -> (1-eps) y + eps (1-y)."""
    terms = []
    for i in range(input.shape[0]):
        if not bool(observed[i].any()):
            continue
        for j in range(input.shape[1]):
            y = float(target[i, j]) if observed[i, j] else 0.0
            y = (1 - epsilon) * y + epsilon * (1 - y)
            x = input[i, j]
            terms.append(-(pos_weight[j] * y * _log_p(x) + (1 - y) * _log_q(x)))
    return terms


def em_by_formula(input, target, observed, alpha, pos_weight):
    """Zhou et al.: BCE on observed labels, -alpha * H(p) on unannotated ones."""
    terms = []
    for i in range(input.shape[0]):
        if not bool(observed[i].any()):
            continue
        for j in range(input.shape[1]):
            x, p = input[i, j], torch.sigmoid(input[i, j])
            if observed[i, j]:
                y = float(target[i, j])
                terms.append(-(pos_weight[j] * y * _log_p(x) + (1 - y) * _log_q(x)))
            else:
                terms.append(alpha * (p * torch.log(p) + (1 - p) * torch.log(1 - p)))
    return terms


def ll_r_by_formula(input, target, observed, rejection_rate, pos_weight):
    """Kim et al.: assume negative, then drop the ceil(rate * n) largest assumed losses."""
    kept, assumed = [], []
    for i in range(input.shape[0]):
        if not bool(observed[i].any()):
            continue
        for j in range(input.shape[1]):
            x = input[i, j]
            if observed[i, j]:
                y = float(target[i, j])
                kept.append(-(pos_weight[j] * y * _log_p(x) + (1 - y) * _log_q(x)))
            else:
                assumed.append(-_log_q(x))
    ranked = sorted(assumed, key=lambda t: -t.item())
    return kept + ranked[math.ceil(round(rejection_rate * len(ranked), 9)) :]


def asl_by_formula(input, target, observed, gamma_pos, gamma_neg, clip, assume_negative):
    """Ridnik et al.: -y (1-p)^g+ log p - (1-y) p_m^g- log(1 - p_m), p_m = max(p - clip, 0)."""
    terms = []
    for i in range(input.shape[0]):
        covered = bool(observed[i].any())
        for j in range(input.shape[1]):
            if not (observed[i, j] or (assume_negative and covered)):
                continue
            p = torch.sigmoid(input[i, j])
            y = float(target[i, j]) if observed[i, j] else 0.0
            p_m = torch.clamp(p - clip, min=0)
            negative = p_m**gamma_neg * torch.log(1 - p_m) if p_m.item() > 0 else p * 0
            terms.append(-(y * (1 - p) ** gamma_pos * torch.log(p) + (1 - y) * negative))
    return terms


def by_formula(terms: list[torch.Tensor], input: torch.Tensor) -> torch.Tensor:
    """The mean of the reference's terms: a graph-connected 0 when there are none."""
    return torch.stack(terms).mean() if terms else input.sum() * 0


@FAST
@given(
    n=sizes,
    k=widths,
    seed=seeds,
    rate=st.sampled_from([0.2, 0.5, 1.0]),
    epsilon=st.floats(min_value=0.0, max_value=0.5),
    alpha=st.floats(min_value=0.0, max_value=2.0),
    rejection_rate=st.sampled_from([0.0, 0.1, 0.3, 0.5, 1.0]),
)
def test_bce_family_matches_autograd_of_the_formula(
    n: int,
    k: int,
    seed: int,
    rate: float,
    epsilon: float,
    alpha: float,
    rejection_rate: float,
) -> None:
    input, target, observed, pos_weight = make(n, k, seed, rate, dtype=torch.float64)
    input = input / 3  # moderate logits: the formula's log(sigmoid) is exact enough there
    cases = [
        (assume_negative_label_smoothing_bce_with_logits, {"epsilon": epsilon}, an_ls_by_formula),
        (entropy_maximization_loss, {"alpha": alpha}, em_by_formula),
        (large_loss_rejection_bce_with_logits, {"rejection_rate": rejection_rate}, ll_r_by_formula),
    ]
    for fn, options, formula in cases:
        loss, grad = loss_and_grad(fn, input, target, observed, pos_weight=pos_weight, **options)

        def reference(x: torch.Tensor, formula: Any = formula, options: Any = options):
            return by_formula(formula(x, target, observed, *options.values(), pos_weight), x)

        expected, expected_grad = loss_and_grad(reference, input)
        torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)


@FAST
@given(
    n=sizes,
    k=widths,
    seed=seeds,
    rate=st.sampled_from([0.2, 0.5, 1.0]),
    gamma_pos=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    gamma_neg=st.sampled_from([0.0, 1.0, 4.0]),
    clip=st.sampled_from([0.0, 0.05, 0.2]),
    assume_negative=st.booleans(),
)
def test_asymmetric_loss_matches_autograd_of_the_formula(
    n: int,
    k: int,
    seed: int,
    rate: float,
    gamma_pos: float,
    gamma_neg: float,
    clip: float,
    assume_negative: bool,
) -> None:
    input, target, observed, _ = make(n, k, seed, rate, dtype=torch.float64)
    input = input / 3
    options = {"gamma_pos": gamma_pos, "gamma_neg": gamma_neg, "clip": clip}
    loss, grad = loss_and_grad(
        asymmetric_loss_with_logits,
        input,
        target,
        observed,
        assume_negative=assume_negative,
        **options,
    )

    def reference(x: torch.Tensor) -> torch.Tensor:
        terms = asl_by_formula(x, target, observed, *options.values(), assume_negative)
        return by_formula(terms, x)

    expected, expected_grad = loss_and_grad(reference, input)
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)


# One hand example: row 0 has label 0 observed positive and p = 1/2, 3/4, 1/4; row 1 nothing.
HAND_INPUT = torch.tensor([[0.0, math.log(3.0), -math.log(3.0)], [2.0, -1.0, 0.5]])
HAND_TARGET = torch.tensor([[1.0, math.nan, math.nan], [math.nan, math.nan, math.nan]])
HAND_OBSERVED = ~HAND_TARGET.isnan()
LN2, LN3, LN4 = math.log(2.0), math.log(3.0), math.log(4.0)
H_QUARTER = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))  # binary entropy of 1/4 (or 3/4)
HAND = [  # (loss, options, sum by hand, count, sum to 6 decimals)
    (
        assume_negative_label_smoothing_bce_with_logits,
        {"epsilon": 0.1},
        LN2 + (0.1 * (LN4 - LN3) + 0.9 * LN4) + (0.1 * LN4 + 0.9 * (LN4 - LN3)),
        3,
        2.367124,
    ),
    (entropy_maximization_loss, {"alpha": 0.1}, LN2 - 0.2 * H_QUARTER, 3, 0.580680),
    (  # the assumed negative with p = 3/4 (loss log 4) is rejected, p = 1/4 kept
        large_loss_rejection_bce_with_logits,
        {"rejection_rate": 0.5},
        LN2 + (LN4 - LN3),
        2,
        0.980829,
    ),
    (  # defaults: p_m = 0.7 and 0.2
        asymmetric_loss_with_logits,
        {"assume_negative": True},
        LN2 - 0.7**4 * math.log(0.3) - 0.2**4 * math.log(0.8),
        3,
        0.982578,
    ),
    (asymmetric_loss_with_logits, {}, LN2, 1, 0.693147),
]


@pytest.mark.parametrize(("fn", "options", "total", "count", "pinned"), HAND)
def test_pinned_values_on_a_hand_example(
    fn: Callable[..., torch.Tensor],
    options: dict[str, Any],
    total: float,
    count: int,
    pinned: float,
) -> None:
    assert total == pytest.approx(pinned, abs=1e-6)
    loss_sum = fn(HAND_INPUT, HAND_TARGET, HAND_OBSERVED, reduction="sum", **options)
    loss_mean = fn(HAND_INPUT, HAND_TARGET, HAND_OBSERVED, reduction="mean", **options)
    assert loss_sum.item() == pytest.approx(total, rel=1e-6)
    assert loss_mean.item() == pytest.approx(total / count, rel=1e-6)
    elementwise = fn(HAND_INPUT, HAND_TARGET, HAND_OBSERVED, reduction="none", **options)
    assert torch.equal(elementwise[1], torch.zeros(3))


@FAST
@given(n=sizes, k=widths, seed=seeds, rate=rates, use_pos_weight=st.booleans())
def test_limits_are_the_existing_strategies_exactly(
    n: int, k: int, seed: int, rate: float, use_pos_weight: bool
) -> None:
    input, target, observed, pos_weight = make(n, k, seed, rate)
    weight = {"pos_weight": pos_weight if use_pos_weight else None}
    for reduction in REDUCTIONS:
        common = {**weight, "reduction": reduction}
        negative = loss_and_grad(
            weak_negative_binary_cross_entropy_with_logits, input, target, observed, **common
        )
        ignore = loss_and_grad(
            masked_binary_cross_entropy_with_logits, input, target, observed, **common
        )
        same = [
            (assume_negative_label_smoothing_bce_with_logits, {"epsilon": 0.0}, negative),
            (large_loss_rejection_bce_with_logits, {"rejection_rate": 0.0}, negative),
            (large_loss_rejection_bce_with_logits, {"rejection_rate": 1.0}, ignore),
        ]
        for fn, options, other in same:
            got = loss_and_grad(fn, input, target, observed, **options, **common)
            assert torch.equal(got[0], other[0]) and torch.equal(got[1], other[1])
        if reduction != "mean":  # alpha = 0: ignore's sum (the count still holds every label)
            em = loss_and_grad(
                entropy_maximization_loss, input, target, observed, alpha=0.0, **common
            )
            assert torch.equal(em[0], ignore[0]) and torch.equal(em[1], ignore[1])


@FAST
@given(n=sizes, k=widths, seed=seeds, rate=rates, assume_negative=st.booleans())
def test_asymmetric_loss_without_focusing_or_clip_is_bce(
    n: int, k: int, seed: int, rate: float, assume_negative: bool
) -> None:
    input, target, observed, _ = make(n, k, seed, rate)
    plain = (
        weak_negative_binary_cross_entropy_with_logits
        if assume_negative
        else masked_binary_cross_entropy_with_logits
    )
    for reduction in REDUCTIONS:
        asl = loss_and_grad(
            asymmetric_loss_with_logits,
            input,
            target,
            observed,
            gamma_pos=0.0,
            gamma_neg=0.0,
            clip=0.0,
            assume_negative=assume_negative,
            reduction=reduction,
        )
        bce = loss_and_grad(plain, input, target, observed, reduction=reduction)
        torch.testing.assert_close(asl[0], bce[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(asl[1], bce[1], rtol=1e-5, atol=1e-7)


def test_asymmetric_clip_discards_easy_negatives() -> None:
    input = torch.tensor([[2.0, -4.0, -1.0, 1.0]])  # p: 0.88, 0.018, 0.27, 0.73
    target = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    observed = torch.ones(1, 4, dtype=torch.bool)
    loss, grad = loss_and_grad(
        asymmetric_loss_with_logits, input, target, observed, reduction="none"
    )
    assert loss[0, 1] == 0.0 and grad[0, 1] == 0.0  # p <= clip: nothing at all
    assert (loss[0, 2:] > 0).all() and (grad[0, 2:] > 0).all()  # pushed towards negative
    # harder negatives weigh more than BCE's ratio: (p_m)^4 grows with p
    bce = F.binary_cross_entropy_with_logits(input, target, reduction="none")
    assert loss[0, 3] / loss[0, 2] > bce[0, 3] / bce[0, 2]


@FAST
@given(n=sizes, k=widths, seed=seeds, alpha=st.floats(min_value=0.01, max_value=2.0))
def test_entropy_gradient_pulls_unannotated_labels_to_one_half(
    n: int, k: int, seed: int, alpha: float
) -> None:
    input, target, observed, _ = make(n, k, seed, 0.4, dtype=torch.float64)
    _, grad = loss_and_grad(
        entropy_maximization_loss, input, target, observed, alpha=alpha, reduction="sum"
    )
    unannotated = ~observed & observed.any(1, keepdim=True)
    p = torch.sigmoid(input)
    # d(-alpha H(sigmoid(x))) / dx = alpha x p (1 - p): gradient descent moves x towards 0
    expected = alpha * input * p * (1 - p)
    torch.testing.assert_close(grad[unannotated], expected[unannotated], rtol=1e-9, atol=1e-12)
    entropy = binary_entropy_with_logits(torch.tensor([0.0, 50.0, -50.0]))
    assert entropy[0].item() == pytest.approx(LN2) and (entropy[1:] >= 0).all()


@FAST
@given(n=sizes, k=widths, seed=seeds, percent=st.integers(min_value=0, max_value=100))
def test_rejection_takes_the_largest_assumed_losses(
    n: int, k: int, seed: int, percent: int
) -> None:
    rate = percent / 100
    input, _, observed, _ = make(n, k, seed, 0.3)
    losses = torch.rand(n, k, generator=torch.Generator().manual_seed(seed)).requires_grad_(True)
    assumed = ~observed & observed.any(1, keepdim=True)
    rejected = rejected_labels(losses, assumed, rate)
    n_assumed = int(assumed.sum())
    assert int(rejected.sum()) == math.ceil(Fraction(percent, 100) * n_assumed)
    assert not (rejected & ~assumed).any() and not rejected.requires_grad
    if rejected.any() and (assumed & ~rejected).any():
        assert losses[rejected].min() >= losses[assumed & ~rejected].max()
    # the rejected entries get exactly zero gradient, the kept ones their BCE gradient
    _, grad = loss_and_grad(
        large_loss_rejection_bce_with_logits,
        input,
        torch.zeros(n, k),
        observed,
        rejection_rate=rate,
        reduction="sum",
    )
    bce_rejected = rejected_labels(
        F.binary_cross_entropy_with_logits(input, torch.zeros(n, k), reduction="none"),
        assumed,
        rate,
    )
    assert torch.equal(grad[bce_rejected], torch.zeros(int(bce_rejected.sum())))
    assert (grad[assumed & ~bce_rejected] > 0).all()


def test_rejection_rate_grows_per_epoch_from_the_second() -> None:
    assert large_loss_rejection_rate(0, delta_rel=0.002) == 0.0
    assert large_loss_rejection_rate(5, delta_rel=0.002) == pytest.approx(0.01)
    assert large_loss_rejection_rate(800, delta_rel=0.002) == 1.0
    assert (
        rejected_labels(torch.arange(10.0)[None], torch.ones(1, 10, dtype=torch.bool), 0.3)[
            0
        ].tolist()
        == [False] * 7 + [True] * 3
    )  # 0.3 * 10 is 3 in exact arithmetic, not 4


def test_options_are_validated() -> None:
    input, target, observed, _ = make(4, 3, seed=0, rate=0.5)
    cases = [
        (assume_negative_label_smoothing_bce_with_logits, {"epsilon": 0.6}, r"epsilon .*0.6"),
        (entropy_maximization_loss, {"alpha": -1.0}, r"alpha must be >= 0, got -1.0"),
        (large_loss_rejection_bce_with_logits, {"rejection_rate": 1.5}, r"rejection_rate .*1.5"),
        (asymmetric_loss_with_logits, {"clip": -0.1}, r"clip must be in \[0.0, 1.0\]"),
        (asymmetric_loss_with_logits, {"gamma_neg": math.nan}, "gamma_neg"),
        (entropy_maximization_loss, {"reduction": "max"}, "reduction must be one of"),
    ]
    for fn, options, message in cases:
        with pytest.raises(TaskmaskError, match=message):
            fn(input, target, observed, **options)
    with pytest.raises(ValueError, match=r"got \(4, 3\), \(4, 2\), \(4, 3\)"):
        asymmetric_loss_with_logits(input, target[:, :2], observed)
    with pytest.raises(TaskmaskError, match="delta_rel"):
        large_loss_rejection_rate(1, delta_rel=2.0)
    with pytest.raises(TaskmaskError, match="epochs_done must be >= 0"):
        large_loss_rejection_rate(-1, delta_rel=0.1)
