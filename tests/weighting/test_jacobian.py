"""Jacobian aggregation: the trunk's gradient is torchjd's aggregator applied to the Jacobian of
the observed tasks (computed here by hand, one `torch.autograd.grad` per task); heads get their
own task's plain gradient; a task with nothing observed is left out of the Jacobian; `fit`
trains with it. Aggregators whose optional packages are missing are skipped, saying which."""

from __future__ import annotations

import math
import sys
import warnings
from importlib.util import find_spec
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchjd import aggregation

from taskmask.api import fit
from taskmask.errors import TaskmaskError
from taskmask.model import MLPConfig, MLPTrunk, MultiTaskModel
from taskmask.tasks import Task, task_loss
from taskmask.training import TrainConfig
from taskmask.weighting import make_weighting
from taskmask.weighting._jacobian import JacobianAggregation

# name -> (torchjd class, torchjd extra, the modules that extra installs)
NEEDS = {
    "upgrad": ("UPGrad", "quadprog_projector", ("qpsolvers", "quadprog")),
    "mgda": ("MGDA", None, ()),
    "pcgrad": ("PCGrad", None, ()),
    "cagrad": ("CAGrad", "cagrad", ("cvxpy", "clarabel")),
    "nash_mtl": ("NashMTL", "nash_mtl", ("cvxpy", "ecos")),
}
OPTIONS: dict[str, dict[str, Any]] = {"cagrad": {"c": 0.4}}  # the default taskmask gives it


def _available(name: str) -> Any:
    _, extra, modules = NEEDS[name]
    missing = [m for m in modules if find_spec(m) is None]
    reason = f"{name} needs {missing}: pip install 'torchjd[{extra}]'"
    return pytest.param(name, marks=pytest.mark.skipif(bool(missing), reason=reason))


AGGREGATORS = [_available(name) for name in NEEDS]
FAST = settings(max_examples=8, deadline=None)
seeds = st.integers(min_value=0, max_value=2**31 - 1)

# Task "b" reads the trunk's first layer, the others its output: heads at several layers.
TASKS = (
    Task(name="a", kind="regression"),
    Task(name="b", kind="binary", attach_to="layer1"),
    Task(name="c", kind="regression", n_outputs=2),
)
N_FEATURES, N_SAMPLES = 3, 16


def _batch(
    seed: int, empty: tuple[str, ...] = ()
) -> tuple[MultiTaskModel, torch.Tensor, torch.Tensor]:
    """A float64 model and one batch's per-task losses and observed counts; the tasks in
    ``empty`` have no observed label, as the trainer builds them."""
    torch.manual_seed(seed)
    trunk = MLPTrunk(N_FEATURES, MLPConfig(hidden=(5, 4), activation="tanh"))
    model = MultiTaskModel(trunk, TASKS, (N_FEATURES,)).double()
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(N_SAMPLES, N_FEATURES, generator=generator, dtype=torch.float64)
    outputs = model(x)
    terms = []
    for task in TASKS:
        output = outputs[task.name]
        target = torch.randn(output.shape, generator=generator, dtype=torch.float64)
        if task.kind == "binary":
            target = (target > 0).double()
        observed = torch.rand(output.shape, generator=generator) < 0.7
        observed[0] = True
        if task.name in empty:
            observed[:] = False
        terms.append(task_loss(task, output, target, observed))
    losses = torch.stack([t.mean() for t in terms])
    return model, losses, torch.stack([t.count for t in terms])


def _shared(model: MultiTaskModel) -> list[torch.Tensor]:
    return list(model.trunk.parameters())


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _jacobian(losses: torch.Tensor, rows: list[int], inputs: list[torch.Tensor]) -> torch.Tensor:
    """One row per task in ``rows``: its loss's gradient on ``inputs``, by plain autograd."""
    gradients = []
    for i in rows:
        grads = torch.autograd.grad(losses[i], inputs, retain_graph=True, materialize_grads=True)
        gradients.append(_flat(list(grads)))
    return torch.stack(gradients)


def _aggregate(name: str, jacobian: torch.Tensor) -> torch.Tensor:
    """``jacobian`` aggregated by a fresh torchjd aggregator built as the weighting builds it."""
    options = dict(OPTIONS.get(name, {}))
    if name == "nash_mtl":
        options["n_tasks"] = len(jacobian)
    aggregator = getattr(aggregation, NEEDS[name][0])(**options)
    torch.manual_seed(0)  # PCGrad draws its projection order
    with warnings.catch_warnings():  # cvxpy: Nash-MTL's problem is not DPP (as the weighting)
        warnings.filterwarnings("ignore", message=".*not DPP", category=UserWarning)
        return aggregator(jacobian)


def _run(
    name: str, losses: torch.Tensor, counts: torch.Tensor, model: MultiTaskModel
) -> JacobianAggregation:
    weighting = JacobianAggregation(len(losses), aggregator=name, **OPTIONS.get(name, {}))
    torch.manual_seed(0)  # PCGrad draws its projection order
    weighting.backward(losses, counts, shared=_shared(model))
    return weighting


def _close(actual: torch.Tensor, expected: torch.Tensor, name: str = "") -> None:
    # Nash-MTL iterates its solver until alpha moves by < 1e-6, so last-bit differences between
    # two ways of computing the same Jacobian can move its answer by ~1e-6 relative.
    rtol, atol = (1e-4, 1e-7) if name == "nash_mtl" else (1e-6, 1e-9)
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", AGGREGATORS)
@FAST
@given(seed=seeds)
def test_trunk_gets_the_aggregated_jacobian_of_the_tasks(name: str, seed: int) -> None:
    model, losses, counts = _batch(seed)
    jacobian = _jacobian(losses, [0, 1, 2], _shared(model))  # (3, n_shared)
    expected = _aggregate(name, jacobian)

    weighting = _run(name, losses, counts, model)
    gradient = _flat([p.grad for p in _shared(model)])
    _close(gradient, expected, name)
    # the logged weights are those of the rows: the update is their combination
    _close(gradient, weighting.aggregation_weights @ jacobian)
    assert weighting.current_weights().tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("name", AGGREGATORS)
@FAST
@given(seed=seeds)
def test_heads_get_their_own_tasks_plain_gradient(name: str, seed: int) -> None:
    model, losses, counts = _batch(seed)
    expected = [
        _flat(list(torch.autograd.grad(loss, list(head.parameters()), retain_graph=True)))
        for loss, head in zip(losses, model.heads.values(), strict=True)
    ]
    _run(name, losses, counts, model)
    for head, gradient in zip(model.heads.values(), expected, strict=True):
        actual = _flat([p.grad for p in head.parameters()])
        torch.testing.assert_close(actual, gradient, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("name", AGGREGATORS)
@FAST
@given(seed=seeds, empty=st.sampled_from(["a", "b", "c"]))
def test_a_task_with_nothing_observed_is_left_out(name: str, seed: int, empty: str) -> None:
    index = [t.name for t in TASKS].index(empty)
    rest = [i for i in range(3) if i != index]
    model, losses, counts = _batch(seed, empty=(empty,))
    assert counts[index] == 0 and losses[index].item() == 0.0
    jacobian = _jacobian(losses, rest, _shared(model))  # (2, n_shared): no zero row
    expected = _aggregate(name, jacobian)

    weighting = _run(name, losses, counts, model)
    with_empty = _flat([p.grad for p in _shared(model)])
    _close(with_empty, expected, name)
    assert weighting.aggregation_weights[index].item() == 0.0
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in model.heads[empty].parameters())

    model, losses, counts = _batch(seed, empty=(empty,))  # same weights, the task dropped
    _run(name, losses[rest], counts[rest], model)
    _close(with_empty, _flat([p.grad for p in _shared(model)]), name)


def test_mgda_would_stop_on_the_zero_row_of_an_unobserved_task() -> None:
    model, losses, counts = _batch(3, empty=("b",))
    with_zero_row = _jacobian(losses, [0, 1, 2], _shared(model))
    assert with_zero_row[1].abs().max() == 0.0
    assert aggregation.MGDA()(with_zero_row).abs().max() == 0.0  # what leaving it in would do

    _run("mgda", losses, counts, model)
    assert _flat([p.grad for p in _shared(model)]).abs().max() > 0.0


@pytest.mark.parametrize("name", AGGREGATORS)
def test_one_observed_task_gives_its_plain_gradient(name: str) -> None:
    model, losses, counts = _batch(5, empty=("a", "c"))
    params = list(model.parameters())
    expected = torch.autograd.grad(losses[1], params, retain_graph=True, materialize_grads=True)

    weighting = _run(name, losses, counts, model)
    _close(_flat([p.grad for p in params]), _flat(list(expected)))
    assert weighting.aggregation_weights.tolist() == [0.0, 1.0, 0.0]


def test_nothing_observed_gives_zero_gradients() -> None:
    model, losses, counts = _batch(6, empty=("a", "b", "c"))
    weighting = _run("mgda", losses, counts, model)
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in model.parameters())
    assert weighting.aggregation_weights.tolist() == [0.0, 0.0, 0.0]


def test_gradients_accumulate_into_existing_grads() -> None:
    model, losses, counts = _batch(7)
    _run("mgda", losses, counts, model)
    once = [p.grad.clone() for p in model.parameters()]
    model, losses, counts = _batch(7)  # the same weights, a fresh graph
    for p, gradient in zip(model.parameters(), once, strict=True):
        p.grad = gradient.clone()
    _run("mgda", losses, counts, model)
    for p, gradient in zip(model.parameters(), once, strict=True):
        torch.testing.assert_close(p.grad, 2 * gradient, rtol=1e-12, atol=0.0)


def test_a_per_task_preference_vector_follows_the_observed_tasks() -> None:
    if find_spec("quadprog") is None or find_spec("qpsolvers") is None:
        pytest.skip(
            "upgrad needs ['qpsolvers', 'quadprog']: pip install 'torchjd[quadprog_projector]'"
        )
    preference = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    model, losses, counts = _batch(8, empty=("b",))
    jacobian = _jacobian(losses, [0, 2], _shared(model))
    expected = aggregation.UPGrad(pref_vector=preference[[0, 2]])(jacobian)
    weighting = JacobianAggregation(3, aggregator="upgrad", pref_vector=preference)
    weighting.backward(losses, counts, shared=_shared(model))
    _close(_flat([p.grad for p in _shared(model)]), expected)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"aggregator": "nope"}, r"unknown aggregator 'nope'; choose one of \['cagrad'"),
        ({"aggregator": "mgda", "epsilon": -1.0}, r"'mgda': invalid options .*epsilon"),
        ({"aggregator": "mgda", "bogus": 1}, r"'mgda': invalid options .*bogus"),
        ({"aggregator": "nash_mtl", "n_tasks": 3}, r"nash_mtl: n_tasks is set from"),
        (
            {"aggregator": "upgrad", "pref_vector": [1.0, 2.0]},
            r"pref_vector must have shape \(3,\)",
        ),
    ],
)
def test_bad_settings_are_rejected_by_name(options: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskmaskError, match=message):
        JacobianAggregation(3, **options)


def test_missing_torchjd_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("torchjd", "torchjd.aggregation", "torchjd.autojac"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(TaskmaskError, match=r"pip install 'taskmask\[jd\]'"):
        JacobianAggregation(2, aggregator="mgda")


@pytest.mark.parametrize("name", ["upgrad", "cagrad", "nash_mtl"])
def test_missing_solver_packages_name_torchjds_extra(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("torchjd._mixins.find_spec", lambda _: None)  # as if none installed
    extra = NEEDS[name][1]
    with pytest.raises(TaskmaskError, match=rf"pip install 'torchjd\[{extra}\]'"):
        JacobianAggregation(2, aggregator=name, **OPTIONS.get(name, {}))


@pytest.mark.parametrize("name", AGGREGATORS)
def test_the_registry_builds_each_aggregator_with_its_defaults(name: str) -> None:
    weighting = make_weighting(name, TASKS)
    assert isinstance(weighting, JacobianAggregation)
    assert weighting.aggregator == name
    assert weighting.aggregator_options == OPTIONS.get(name, {})  # CAGrad's c is given one
    assert weighting(torch.tensor([1.0, 2.0, 3.0]), torch.ones(3)).item() == 6.0


@pytest.mark.parametrize("name", [_available("upgrad"), _available("mgda")])
def test_fit_trains_with_a_jacobian_aggregator(name: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, N_FEATURES)).astype(np.float32)
    labels = {
        "a": np.where(rng.random(64) < 0.3, np.nan, x[:, 0] + x[:, 1]),
        "b": np.where(rng.random(64) < 0.3, -1.0, (x[:, 2] > 0).astype(np.float64)),
        "c": np.where(rng.random((64, 2)) < 0.3, np.nan, x[:, :2] * 2),
    }
    result = fit(
        x,
        labels,
        TASKS,
        trunk=MLPConfig(hidden=(8, 8)),
        config=TrainConfig(weighting=name),  # fit's own `weighting` takes a Weighting object
        epochs=2,
        batch_size=16,
        validation_split=0.25,
        progress=False,
        device="cpu",
    )
    history = result.history
    assert len(history) == 2
    tracked = [c for c in history if c.endswith("loss") or c.startswith("weight/")]
    # train/val: total, mean over tasks and per-task losses; a weight per task
    assert len(tracked) == 2 * 5 + 3
    assert all(math.isfinite(v) for v in history[tracked].to_numpy().ravel())
    weighting = result.trainer.weighting
    assert isinstance(weighting, JacobianAggregation) and weighting.aggregator == name
    assert torch.isfinite(weighting.aggregation_weights).all()
