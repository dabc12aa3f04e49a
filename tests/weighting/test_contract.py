"""The contract of every registered weighting, driven as the trainer drives it
(``backward(losses, n_observed, shared=trunk)``, optimiser step, ``after_step`` when asked
for, ``end_epoch``): a task whose labels are all missing changes nothing for the others, and
with every task observed the gradients and the loss stay finite.

A method is skipped at run time, with the reason, while its module is not written yet or while
an optional package it needs is not installed; any other failure to build it fails the test.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from taskmask.data import MultiTaskData, make_data
from taskmask.errors import TaskmaskError
from taskmask.functional import LossTerm
from taskmask.model import MLPConfig, MLPTrunk, MultiTaskModel
from taskmask.tasks import Task, task_loss
from taskmask.weighting import WEIGHTINGS, Weighting, make_weighting

N_ROWS, N_FEATURES, BATCH_SIZE = 24, 4, 12
EPOCHS = 4  # DWA's weights leave 1 after the second epoch; 8 optimiser steps in all
ANIMALS = ("cat", "dog", "owl")
TASKS = (
    Task(name="tox", kind="binary"),
    Task(name="size", kind="regression", n_outputs=2),
    Task(name="animal", kind="multiclass", labels=ANIMALS),
)
EMPTY = Task(name="extra", kind="binary")  # appended; not one label observed


def _data(tasks: Sequence[Task], *, missing: float) -> MultiTaskData:
    """Rows following simple rules; each real label missing with probability ``missing``;
    every label of ``extra`` missing."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_ROWS, N_FEATURES)).astype(np.float32)
    tox = (x[:, 0] > 0).astype(np.float64)
    size = np.stack([x[:, 1] + x[:, 2], x[:, 3]], axis=1)
    animal = np.asarray(ANIMALS, dtype=object)[np.digitize(x[:, 3], [-0.4, 0.4])]
    tox[rng.random(N_ROWS) < missing] = np.nan
    size[rng.random(size.shape) < missing] = np.nan
    animal[rng.random(N_ROWS) < missing] = None
    labels = {"tox": tox, "size": size, "animal": animal, "extra": np.full(N_ROWS, np.nan)}
    return make_data(x, {t.name: labels[t.name] for t in tasks}, tasks)


def _models() -> tuple[MultiTaskModel, MultiTaskModel]:
    """The 3-task model and the same model with the ``extra`` head appended, sharing every
    weight (the smaller one loads the larger one's state)."""
    torch.manual_seed(0)
    trunk = MLPTrunk(N_FEATURES, MLPConfig(hidden=(8, 8)))
    grown = MultiTaskModel(trunk, (*TASKS, EMPTY), (N_FEATURES,))
    base = MultiTaskModel(MLPTrunk(N_FEATURES, MLPConfig(hidden=(8, 8))), TASKS, (N_FEATURES,))
    state = grown.state_dict()
    base.load_state_dict({k: v for k, v in state.items() if not k.startswith("heads.extra.")})
    return base, grown


def _make(name: str, tasks: Sequence[Task]) -> Weighting:
    try:
        return make_weighting(name, tasks)
    except ModuleNotFoundError as error:
        if error.name is not None and error.name.startswith("taskmask.weighting."):
            pytest.skip(f"weighting {name!r}: its module {error.name} is not written yet")
        raise
    except TaskmaskError as error:
        if isinstance(error.__cause__, ImportError):  # an optional package, named in the error
            pytest.skip(f"weighting {name!r} cannot be built here: {error}")
        raise


@dataclass
class Step:
    """One optimiser step's per-task losses and counts, and the gradients it applied."""

    losses: torch.Tensor
    counts: torch.Tensor
    terms: list[LossTerm]
    grads: dict[str, torch.Tensor | None]


class Run:
    """A model, its weighting and its optimiser, stepped exactly as `Trainer` steps them."""

    def __init__(self, name: str, model: MultiTaskModel, data: MultiTaskData) -> None:
        self.model, self.data = model, data
        self.weighting = _make(name, model.tasks)
        params = [*model.parameters(), *self.weighting.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=1e-2, fused=True)  # as the trainer's

    def terms(self, batch: MultiTaskData) -> list[LossTerm]:
        outputs = self.model(batch.inputs)
        return [
            task_loss(
                t, outputs[t.name], batch.labels[t.name].target, batch.labels[t.name].observed
            )
            for t in self.model.tasks
        ]

    def step(self, batch: MultiTaskData) -> Step:
        terms = self.terms(batch)
        losses = torch.stack([t.mean() for t in terms])
        counts = torch.stack([t.count for t in terms])
        self.optimizer.zero_grad(set_to_none=True)
        shared = [p for p in self.model.trunk.parameters() if p.requires_grad]
        self.weighting.backward(losses, counts, shared=shared)
        grads = {
            name: None if p.grad is None else p.grad.clone()
            for name, p in self.model.named_parameters()
        }
        self.optimizer.step()
        if self.weighting.needs_losses_after_step:
            with torch.no_grad():
                after = torch.stack([t.mean() for t in self.terms(batch)])
            self.weighting.after_step(after, counts)
        return Step(losses.detach(), counts, terms, grads)

    def epochs(self) -> Iterator[Step]:
        """Every step of ``EPOCHS`` epochs over consecutive batches, then ``end_epoch``."""
        for _ in range(EPOCHS):
            sums = torch.zeros(len(self.model.tasks), dtype=torch.float64)
            counts = torch.zeros_like(sums)
            for batch in self.data.batches(BATCH_SIZE):
                step = self.step(batch)
                sums += torch.stack([t.sum.detach() for t in step.terms]).double()
                counts += step.counts.double()
                yield step
            self.weighting.end_epoch((sums / counts.clamp(min=1)).float())


def _assert_finite(step: Step, weights: torch.Tensor) -> None:
    assert torch.isfinite(step.losses).all(), step.losses
    assert torch.isfinite(weights).all(), weights
    for name, grad in step.grads.items():
        assert grad is None or torch.isfinite(grad).all(), name


def _assert_same(actual: torch.Tensor, expected: torch.Tensor, where: str) -> None:
    """Bit for bit: an all-missing task only ever adds exact zeros, so no method has a reason
    to differ by even one ulp (every method meeting the contract here does so exactly)."""
    torch.testing.assert_close(actual, expected, rtol=0.0, atol=0.0, msg=lambda m: f"{where}: {m}")


@pytest.mark.parametrize("name", sorted(WEIGHTINGS))
def test_a_task_with_every_label_missing_changes_nothing_for_the_others(name: str) -> None:
    base_model, grown_model = _models()
    extra_head = {k: v.clone() for k, v in grown_model.heads["extra"].state_dict().items()}
    base = Run(name, base_model, _data(TASKS, missing=0.25))
    grown = Run(name, grown_model, _data((*TASKS, EMPTY), missing=0.25))
    weights = base.weighting.current_weights
    grown_weights = grown.weighting.current_weights
    _assert_same(grown_weights()[:3], weights(), f"{name}, weights before any step")
    for number, (one, two) in enumerate(zip(base.epochs(), grown.epochs(), strict=True)):
        where = f"{name}, step {number}"
        assert two.counts[3].item() == 0
        _assert_finite(one, weights())
        _assert_finite(two, grown_weights())
        _assert_same(two.losses[:3], one.losses, f"{where}, losses")
        for key, grad in one.grads.items():  # the trunk and the three real heads
            other = two.grads[key]
            assert (grad is None) == (other is None), f"{where}: {key}"
            if grad is not None and other is not None:
                _assert_same(other, grad, f"{where}, gradient of {key}")
        for key in ("heads.extra.weight", "heads.extra.bias"):
            extra = two.grads[key]
            assert extra is None or not extra.any(), f"{where}: {key} gets {extra}"
        _assert_same(grown_weights()[:3], weights(), f"{where}, weights after the step")
        grown_state = grown_model.state_dict()
        for key, value in base_model.state_dict().items():  # the trajectories
            _assert_same(grown_state[key], value, f"{where}, {key} after the step")
    for key, value in grown_model.heads["extra"].state_dict().items():
        assert torch.equal(value, extra_head[key]), f"{name}: the extra head moved ({key})"


@pytest.mark.parametrize("name", sorted(WEIGHTINGS))
def test_every_task_observed_gives_finite_gradients_and_loss(name: str) -> None:
    model = _models()[0]
    run = Run(name, model, _data(TASKS, missing=0.0))
    batch = next(run.data.batches(BATCH_SIZE))
    for _ in range(3):
        step = run.step(batch)
        weights = run.weighting.current_weights()
        _assert_finite(step, weights)
        assert (step.counts > 0).all()
        assert all(grad is not None for grad in step.grads.values()), name
        total = (weights * step.losses).sum()  # the loss the trainer logs
        assert torch.isfinite(total), f"{name}: total loss {total}"
    for key, value in model.state_dict().items():
        assert torch.isfinite(value).all(), f"{name}: {key} is not finite after 3 steps"
