"""The single-positive losses as ``Task.missing_labels`` strategies: validation of
``missing_label_options``, the loss equal to `taskmask.functional`'s, missing labels inert,
LL-R's epoch from the trainer, and the run config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import taskmask.training._batch_loss as batch_loss_module
from taskmask.api import fit
from taskmask.app.cli import main
from taskmask.app.config import load_config
from taskmask.errors import TaskmaskError
from taskmask.functional import (
    assume_negative_label_smoothing_bce_with_logits,
    asymmetric_loss_with_logits,
    entropy_maximization_loss,
    large_loss_rejection_bce_with_logits,
    single_positive_loss_term,
)
from taskmask.persistence import load_model
from taskmask.tasks import Task, task_loss

NEW = ("smoothed_negative", "entropy_max", "large_loss_rejection", "asymmetric")


def ml(strategy: str, options: dict[str, float] | None = None, **fields: Any) -> Task:
    return Task(
        name="tags",
        kind="multilabel",
        n_outputs=4,
        missing_labels=strategy,
        missing_label_options=options,
        **fields,
    )


def single_positive(seed: int, n: int = 12, k: int = 4) -> tuple[torch.Tensor, ...]:
    """Logits, targets with NaN where missing, and ``observed``: one positive per row but the
    last row, which has nothing observed."""
    g = torch.Generator().manual_seed(seed)
    input = torch.randn(n, k, generator=g, dtype=torch.float64) * 2
    observed = torch.zeros(n, k, dtype=torch.bool)
    observed[torch.arange(n - 1), torch.randint(0, k, (n - 1,), generator=g)] = True
    target = torch.where(observed, 1.0, torch.nan).to(torch.float64)
    return input, target, observed


@pytest.mark.parametrize(
    ("strategy", "options", "message"),
    [
        ("entropy_max", {"epsilon": 0.1}, "'epsilon', but missing_labels='entropy_max' takes"),
        ("negative", {"alpha": 0.1}, "missing_labels='negative' takes none"),
        ("ignore", {"delta_rel": 0.01}, "missing_labels='ignore' takes none"),
        ("smoothed_negative", {"epsilon": 0.7}, r"epsilon=0.7 is outside \[0.0, 0.5\]"),
        ("large_loss_rejection", {"delta_rel": -0.1}, r"delta_rel=-0.1 is outside"),
        ("asymmetric", {"clip": 1.5}, r"clip=1.5 is outside \[0.0, 1.0\]"),
        ("entropy_max", {"alpha": -1.0}, r"alpha=-1.0 is outside \[0.0, inf\]"),
    ],
)
def test_a_wrong_option_is_an_error_naming_the_task(
    strategy: str, options: dict[str, float], message: str
) -> None:
    with pytest.raises(TaskmaskError, match=rf"task 'tags'.*{message}"):
        ml(strategy, options)


def test_strategies_are_multilabel_only_and_asymmetric_takes_no_pos_weight() -> None:
    with pytest.raises(TaskmaskError, match=r"task 'b'.*not binary"):
        Task(name="b", kind="binary", missing_labels="entropy_max")
    with pytest.raises(TaskmaskError, match="pos_weight does not apply to missing_labels='asym"):
        ml("asymmetric", pos_weight=2.0)


CASES = [
    ("smoothed_negative", {"epsilon": 0.2}, assume_negative_label_smoothing_bce_with_logits),
    ("entropy_max", {"alpha": 0.3}, entropy_maximization_loss),
    ("asymmetric", {"gamma_neg": 2.0, "clip": 0.1}, asymmetric_loss_with_logits),
]


@pytest.mark.parametrize(("strategy", "options", "loss"), CASES, ids=[c[0] for c in CASES])
def test_the_task_loss_is_the_functional_loss_with_the_options(
    strategy: str, options: dict[str, float], loss: Any
) -> None:
    input, target, observed = single_positive(0)
    got = task_loss(ml(strategy, options), input, target, observed)
    extra = {"assume_negative": True} if strategy == "asymmetric" else {}
    want = single_positive_loss_term(loss, input, target, observed, **options, **extra)
    torch.testing.assert_close(got.sum, want.sum, rtol=0, atol=0)
    torch.testing.assert_close(got.count, want.count.to(got.count.dtype), rtol=0, atol=0)
    assert got.count == 11 * 4  # every label of a covered row; the empty row counts nothing


def test_large_loss_rejection_grows_with_the_epochs_done() -> None:
    input, target, observed = single_positive(1)
    task = ml("large_loss_rejection", {"delta_rel": 0.1})
    first = task_loss(task, input, target, observed, epochs_done=0)
    negative = task_loss(ml("negative"), input, target, observed)
    torch.testing.assert_close(first.sum, negative.sum, rtol=0, atol=0)
    third = task_loss(task, input, target, observed, epochs_done=3)
    want = single_positive_loss_term(
        large_loss_rejection_bce_with_logits, input, target, observed, rejection_rate=0.3
    )
    torch.testing.assert_close(third.sum, want.sum, rtol=0, atol=0)
    assert third.count == 44 - 10  # ceil(0.3 * 33 assumed negatives) rejected
    default = task_loss(ml("large_loss_rejection"), input, target, observed, epochs_done=100)
    assert default.count == 44 - 7  # delta_rel 0.002: 20 % of 33, rounded up


@pytest.mark.parametrize("strategy", NEW)
def test_missing_values_change_nothing_and_an_empty_task_is_exactly_zero(strategy: str) -> None:
    input, target, observed = single_positive(2)
    leaf = input.clone().requires_grad_(True)
    task = ml(strategy)
    term = task_loss(task, leaf, target, observed, epochs_done=5)
    (grad,) = torch.autograd.grad(term.sum, leaf)
    odd = torch.where(observed, target, torch.inf)
    other = leaf.detach().clone().requires_grad_(True)
    term_odd = task_loss(task, other, odd, observed, epochs_done=5)
    (grad_odd,) = torch.autograd.grad(term_odd.sum, other)
    assert term.sum == term_odd.sum and torch.equal(grad, grad_odd)
    assert torch.isfinite(grad).all() and (grad[-1] == 0).all()  # the row with nothing observed
    empty = torch.zeros_like(observed)
    zero = task_loss(task, leaf, target, empty)
    (grad_empty,) = torch.autograd.grad(zero.sum, leaf)
    assert zero.sum == 0 and zero.count == 0 and (grad_empty == 0).all()


def problem(n: int = 64, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    labels = np.full((n, k), np.nan)
    labels[np.arange(n), rng.integers(0, k, n)] = 1.0
    return x, labels


def test_fit_passes_the_epochs_done_to_the_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real = batch_loss_module.task_loss

    def spy(*args: Any, epochs_done: int = 0, **kwargs: Any) -> Any:
        seen.append(epochs_done)
        return real(*args, epochs_done=epochs_done, **kwargs)

    monkeypatch.setattr(batch_loss_module, "task_loss", spy)
    x, labels = problem()
    task = ml("large_loss_rejection", {"delta_rel": 0.2})
    result = fit(x, {"tags": labels}, [task], epochs=3, batch_size=32, progress=False, seed=0)
    assert sorted(set(seen)) == [0, 1, 2] and seen == sorted(seen)
    assert seen.count(2) == 2  # two batches in the last epoch, no validation
    assert np.isfinite(result.history["train/tags/loss"].to_numpy(dtype=float)).all()


@pytest.mark.parametrize("strategy", NEW)
def test_fit_trains_every_strategy(strategy: str) -> None:
    x, labels = problem()
    result = fit(x, {"tags": labels}, [ml(strategy)], epochs=2, progress=False, seed=0)
    assert len(result.history) == 2
    assert np.isfinite(result.history["train/tags/loss"].to_numpy(dtype=float)).all()


def test_the_run_config_sets_the_options_and_names_the_task(tmp_path: Path) -> None:
    x, labels = problem(80, 2)
    table = {"x0": x[:, 0], "x1": x[:, 1], "a": labels[:, 0], "b": labels[:, 1]}

    pd.DataFrame(table).to_csv(tmp_path / "train.csv", index=False)
    task = {"name": "tags", "kind": "multilabel", "columns": ["a", "b"]}
    task.update({"missing_labels": "entropy_max", "missing_label_options": {"alpha": 0.2}})
    raw = {
        "data": {"train": "train.csv", "features": ["x0", "x1"], "validation_split": 0.25},
        "tasks": [task],
        "model": {"trunk": {"hidden": [4]}},
        "training": {"epochs": 1, "batch_size": 32},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    argv = ["train", "--config", str(tmp_path / "run.yaml"), "--out", str(run), "--quiet"]
    assert main(argv) == 0
    (saved,) = load_model(run).tasks
    assert (saved.missing_labels, saved.missing_label_options) == ("entropy_max", {"alpha": 0.2})
    (spec,) = load_config(run / "config.yaml").tasks
    assert spec.missing_label_options == {"alpha": 0.2}
    task["missing_label_options"] = {"delta_rel": 0.01}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(TaskmaskError, match=r"task 'tags'.*'delta_rel', but missing_labels='e"):
        load_config(tmp_path / "run.yaml")
