"""Learning-rate schedules: the rates each type gives per epoch (against torch's own schedulers
driven by hand), ``lr`` in the history, and resumed runs that follow the same rates bit for bit."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from test_resume import BASE, _assert_same_weights, _same_history
from training_script import model, problem, train

from taskmask.errors import TaskmaskError
from taskmask.functional import LossTerm
from taskmask.tasks import Task, task_loss
from taskmask.training import LossFn, Schedule, TrainConfig, Trainer, checkpoint
from taskmask.training._schedule import LearningRate


def _rates(schedule: Schedule, epochs: int, monitored: list[float] | None = None) -> list[float]:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    rate = LearningRate(schedule, optimizer, epochs)
    rates = []
    for epoch in range(epochs):
        rates.append(rate.lr)
        parameter.grad = torch.zeros(1)
        optimizer.step()
        rate.step({"val/loss": monitored[epoch] if monitored else 1.0})
    return rates


def test_cosine_goes_from_lr_to_min_lr_over_the_epochs() -> None:
    rates = _rates(Schedule(type="cosine", min_lr=0.01), 5)
    expected = [0.01 + 0.09 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(5)]
    assert rates == pytest.approx(expected, abs=1e-12)


def test_warmup_rises_linearly_to_lr_then_the_schedule_starts() -> None:
    rates = _rates(Schedule(type="cosine", warmup_epochs=3), 7)
    assert rates[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1], abs=1e-12)
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in itertools.pairwise(rates[3:]))


def test_step_multiplies_by_gamma_every_step_size_epochs() -> None:
    rates = _rates(Schedule(type="step", step_size=2, gamma=0.5), 6)
    assert rates == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025], abs=1e-12)


def test_plateau_reduces_after_patience_epochs_without_improvement() -> None:
    losses = [1.0, 0.9, 0.9, 0.9, 0.9, 0.9]
    rates = _rates(Schedule(type="plateau", patience=2, gamma=0.5), 6, losses)
    # two epochs without improvement are tolerated; the third (epoch index 4) reduces the rate
    assert rates == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.1, 0.05], abs=1e-12)


def test_onecycle_peaks_at_lr_after_the_warmup_epochs() -> None:
    rates = _rates(Schedule(type="onecycle", warmup_epochs=2), 6)
    assert max(rates) == pytest.approx(0.1) and rates.index(max(rates)) == 2
    assert rates[0] == pytest.approx(0.1 / 25) and rates[-1] < rates[0]


def test_the_state_is_json_and_continues_the_schedule() -> None:
    for kind in ("cosine", "onecycle", "step", "plateau"):
        schedule = Schedule(type=kind, warmup_epochs=1)
        parameter = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.SGD([parameter], lr=0.1)
        rate = LearningRate(schedule, optimizer, 6)
        for _ in range(3):
            parameter.grad = torch.zeros(1)
            optimizer.step()
            rate.step({"val/loss": 1.0})
        again = torch.optim.SGD([parameter], lr=0.1)
        copy = LearningRate(schedule, again, 6)
        again.load_state_dict(optimizer.state_dict())
        copy.load_state(json.loads(json.dumps(rate.state())))
        for _ in range(3):
            assert copy.lr == rate.lr, kind
            for step in (rate, copy):
                step.optimizer.step()
                step.step({"val/loss": 1.0})


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ValidationError, match="monitor applies to type: plateau"):
        Schedule(type="cosine", monitor="val/b/roc_auc")
    with pytest.raises(ValidationError, match="type"):
        Schedule.model_validate({"type": "linear"})
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(TaskmaskError, match="warmup_epochs: 5 warm-up epochs leave none of the 5"):
        LearningRate(Schedule(type="step", warmup_epochs=5), optimizer, 5)
    rate = LearningRate(Schedule(type="plateau", monitor="val/x/loss"), optimizer, 5)
    with pytest.raises(TaskmaskError, match="'val/x/loss' is not in the history; available"):
        rate.step({"val/loss": 1.0})


def test_the_history_holds_each_epochs_rate(tmp_path: Path) -> None:
    config = {**BASE, "epochs": 4, "scheduler": {"type": "step", "step_size": 1, "gamma": 0.5}}
    _, history = train("stepped", tmp_path, config)
    assert [row["lr"] for row in history] == pytest.approx([1e-2, 5e-3, 2.5e-3, 1.25e-3])
    _, plain = train("plain", tmp_path, {**BASE, "epochs": 2})
    assert [row["lr"] for row in plain] == [1e-2, 1e-2]


class _Crash(Exception):
    pass


def _crash_after(calls: int) -> LossFn:
    """The regression task's loss, raising `_Crash` in its ``calls``-th call."""
    count = [0]

    def loss(
        task: Task, output: torch.Tensor, target: torch.Tensor, observed: torch.Tensor
    ) -> LossTerm:
        count[0] += 1
        if count[0] == calls:
            raise _Crash
        return task_loss(task, output, target, observed)

    return loss


@pytest.mark.parametrize("kind", ["cosine", "onecycle", "plateau"])
def test_a_run_crashed_mid_way_resumes_on_the_same_rates(tmp_path: Path, kind: str) -> None:
    scheduler: dict[str, object] = {"type": kind, "warmup_epochs": 1}
    if kind == "plateau":
        scheduler.update(patience=0, monitor="val/c/accuracy")  # it plateaus from epoch 3
    config = {**BASE, "epochs": 5, "validation_split": 0.2, "scheduler": scheduler}
    whole, history = train("whole", tmp_path, config)
    config["checkpoint_dir"] = str(tmp_path / "ckpt")
    crashing = Trainer(TrainConfig.model_validate(config), loss_fns={"r": _crash_after(30)})
    with pytest.raises(_Crash):
        crashing.fit(model(), problem())
    assert 1 <= checkpoint.load(tmp_path / "ckpt").meta["epoch"] < 5
    resumed, resumed_history = train("resumed", tmp_path, config, resume=True)
    _assert_same_weights(whole.state_dict(), resumed.state_dict())
    assert _same_history(history, resumed_history)
    assert len({row["lr"] for row in history}) > 2
