"""``Task.missing_labels`` end to end: validation, the packed batch loss, other tasks untouched,
metrics on observed labels only, the run config, saved models, and training on single positive
labels (Cole et al. 2021)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from pydantic import ValidationError
from sklearn.metrics import average_precision_score

from taskmask.api import fit
from taskmask.app.cli import main
from taskmask.app.config import load_config
from taskmask.data import MultiTaskData
from taskmask.errors import TaskmaskError
from taskmask.functional import EncodedLabels
from taskmask.model import MLPConfig, MLPTrunk, MultiTaskModel, raw_outputs
from taskmask.persistence import META_FILE, load_model, save_model
from taskmask.tasks import Task, task_loss, task_metrics
from taskmask.training import BatchLoss, Trainer
from taskmask.weighting import make_weighting


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def ml(name: str, strategy: str = "ignore", **options: Any) -> Task:
    return Task(name=name, kind="multilabel", n_outputs=3, missing_labels=strategy, **options)


STRATEGY_TASKS = (
    ml("neg", "negative"),
    ml("weak", "weak_negative", negative_weight=0.2),
    ml("epr", "expected_positive", expected_positives=1.2),
)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kind": "binary", "missing_labels": "negative"}, "applies to multilabel tasks only"),
        ({"kind": "multiclass", "missing_labels": "weak_negative"}, "not multiclass"),
        ({"kind": "regression", "missing_labels": "negative"}, "not regression"),
        ({"negative_weight": 0.5}, "negative_weight needs missing_labels='weak_negative'"),
        (
            {"missing_labels": "negative", "negative_weight": 0.5},
            "negative_weight needs missing_labels='weak_negative'",
        ),
        ({"expected_positives": 1.0}, "expected_positives needs missing_labels='expected_posi"),
        ({"expected_positive_weight": 2.0}, "expected_positive_weight needs missing_labels="),
        ({"missing_labels": "expected_positive"}, "needs expected_positives, the mean number"),
        (
            {"missing_labels": "expected_positive", "expected_positives": 2.5, "n_outputs": 2},
            "expected_positives=2.5 exceeds its 2 labels",
        ),
    ],
)
def test_invalid_combinations_name_the_task(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=r"task 'tags': ") as info:
        Task.model_validate({"name": "tags", "kind": "multilabel", **options})
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"missing_labels": "assume_negative"}, "missing_labels"),
        ({"missing_labels": "weak_negative", "negative_weight": 1.5}, "negative_weight"),
        ({"missing_labels": "expected_positive", "expected_positives": 0.0}, "expected_positives"),
        (
            {
                "missing_labels": "expected_positive",
                "expected_positives": 1.0,
                "expected_positive_weight": -1.0,
            },
            "expected_positive_weight",
        ),
    ],
)
def test_out_of_range_options_are_rejected(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Task.model_validate({"name": "tags", "kind": "multilabel", **options})


def test_defaults_leave_every_existing_task_as_it_was() -> None:
    task = Task(name="tags", kind="multilabel")
    assert task.missing_labels == "ignore"
    assert task.negative_weight is None and task.expected_positives is None
    assert task.expected_positive_weight is None


def labels_for(tasks: tuple[Task, ...], n: int, seed: int, rate: float = 0.5):
    gen = torch.Generator().manual_seed(seed)
    outputs, labels = {}, {}
    for task in tasks:
        outputs[task.name] = torch.randn(n, task.width, generator=gen, requires_grad=True)
        target = (torch.rand(n, task.width, generator=gen) < 0.4).float()
        observed = torch.rand(n, task.width, generator=gen) < rate
        labels[task.name] = EncodedLabels(target.masked_fill(~observed, math.nan), observed)
    return outputs, MultiTaskData(torch.zeros(n, 1), labels)


MIXED = (
    Task(name="bin", kind="binary"),
    ml("plain"),
    *STRATEGY_TASKS,
    ml("plain_pw", pos_weight=(2.0, 0.5, 1.0)),
)


def plan_for(tasks: tuple[Task, ...]) -> BatchLoss:
    weights = {t.name: None if t.pos_weight is None else torch.tensor(t.pos_weight) for t in tasks}
    return BatchLoss(tasks, loss_fns={}, pos_weights=weights, device=torch.device("cpu"))


@pytest.mark.parametrize("seed", range(4))
def test_strategy_tasks_stay_out_of_the_packed_block_and_keep_their_loss(seed: int) -> None:
    plan = plan_for(MIXED)
    assert [t.name for t in plan.packed] == ["bin", "plain", "plain_pw"]
    outputs, data = labels_for(MIXED, 30, seed)
    sums, counts = plan(outputs, plan.pack(data))
    for i, task in enumerate(MIXED):
        enc = data.labels[task.name]
        pos_weight = plan.pos_weights[task.name]
        term = task_loss(task, outputs[task.name], enc.target, enc.observed, pos_weight=pos_weight)
        torch.testing.assert_close(sums[i], term.sum, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(counts[i], term.count)
        grads = torch.autograd.grad(sums[i], list(outputs.values()), retain_graph=True)
        (own,) = torch.autograd.grad(term.sum, outputs[task.name])
        for other, grad in zip(MIXED, grads, strict=True):
            if other.name == task.name:
                torch.testing.assert_close(grad, own, rtol=1e-6, atol=1e-7)
            else:  # one task's loss, whatever its strategy, leaves every other head alone
                assert torch.equal(grad, torch.zeros_like(grad)), (task.name, other.name)


def tiny_model(tasks: list[Task]) -> MultiTaskModel:
    return MultiTaskModel(MLPTrunk(4, MLPConfig(hidden=(6,))), tasks, (4,))


@pytest.mark.parametrize("weighting", ["static", "uncertainty"])
@pytest.mark.parametrize(
    "extra",
    [ml("extra"), *(task.model_copy(update={"name": "extra"}) for task in STRATEGY_TASKS)],
    ids=lambda task: task.missing_labels,
)
def test_appending_an_all_missing_task_changes_nothing(weighting: str, extra: Task) -> None:
    base = [Task(name="bin", kind="binary"), *STRATEGY_TASKS, ml("plain")]
    torch.manual_seed(0)
    full = tiny_model([*base[:2], extra, *base[2:]])
    small = tiny_model(base)
    small.load_state_dict({k: v for k, v in full.state_dict().items() if "heads.extra." not in k})
    x = torch.randn(12, 4, generator=torch.Generator().manual_seed(1))
    _, data = labels_for(tuple(base), 12, seed=2)
    missing = EncodedLabels(torch.full((12, 3), math.nan), torch.zeros(12, 3, dtype=torch.bool))
    with_extra = MultiTaskData(x, {**data.labels, "extra": missing})

    def total(model: MultiTaskModel, labels: MultiTaskData) -> torch.Tensor:
        plan = plan_for(model.tasks)
        sums, counts = plan(model(x), plan.pack(labels))
        weights = make_weighting(weighting, model.tasks)
        return weights(sums / counts.clamp(min=1), counts)

    loss_full, loss_small = total(full, with_extra), total(small, MultiTaskData(x, data.labels))
    loss_full.backward()
    loss_small.backward()
    assert torch.isfinite(loss_full) and torch.equal(loss_full, loss_small)
    grads = dict(full.named_parameters())
    for name, parameter in small.named_parameters():
        assert parameter.grad is not None
        assert torch.equal(grads[name].grad, parameter.grad), name
    for parameter in full.heads["extra"].parameters():
        assert parameter.grad is None or not parameter.grad.any()


def test_metrics_count_observed_labels_only_whatever_the_strategy() -> None:
    gen = torch.Generator().manual_seed(3)
    output = torch.randn(40, 3, generator=gen)
    target = (torch.rand(40, 3, generator=gen) < 0.5).float()
    observed = torch.rand(40, 3, generator=gen) < 0.4
    observed[:, 0] = True  # and some rows with one label only
    reference = task_metrics(ml("plain"), output, target, observed)
    for task in STRATEGY_TASKS:
        garbage = target.masked_fill(~observed, math.nan)
        metrics = task_metrics(task.model_copy(update={"name": "plain"}), output, garbage, observed)
        assert metrics == reference
    counts = [reference[f"n_observed/{label}"] for label in ml("plain").output_names]
    assert counts == observed.sum(0).tolist()
    assert counts[0] == 40 and max(counts[1:]) < 40  # assumed negatives never count


def test_evaluation_losses_follow_the_strategy_and_metrics_do_not() -> None:
    x = torch.randn(60, 4, generator=torch.Generator().manual_seed(4))
    _, data = labels_for((ml("tags"),), 60, seed=5, rate=0.4)
    data = MultiTaskData(x, data.labels)
    rows = {}
    torch.manual_seed(0)
    state = tiny_model([ml("tags")]).state_dict()
    for strategy, options in [("ignore", {}), ("negative", {}), ("weak_negative", {})]:
        model = tiny_model([ml("tags", strategy, **options)])
        model.load_state_dict(state)
        rows[strategy] = Trainer().evaluate(model, data)
    ignore = rows.pop("ignore")
    for row in rows.values():
        assert row["val/tags/loss"] != ignore["val/tags/loss"]
        metrics = {k: v for k, v in row.items() if "loss" not in k}
        assert "val/tags/n_observed/tags_1" in metrics
        np.testing.assert_equal(metrics, {k: v for k, v in ignore.items() if "loss" not in k})


def test_the_run_config_sets_the_strategy_and_names_the_task(tmp_path: Path) -> None:
    raw = {
        "data": {"train": "train.csv", "features": ["x0"]},
        "tasks": [
            {
                "name": "tags",
                "kind": "multilabel",
                "columns": ["a", "b", "c"],
                "missing_labels": "expected_positive",
                "expected_positives": 1.4,
                "expected_positive_weight": 2.0,
            },
            {"name": "weak", "kind": "multilabel", "columns": ["d", "e"]},
        ],
    }
    raw["tasks"][1].update({"missing_labels": "weak_negative", "negative_weight": 0.25})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    tags, weak = load_config(path).task_list()
    assert (tags.missing_labels, tags.expected_positives, tags.expected_positive_weight) == (
        "expected_positive",
        1.4,
        2.0,
    )
    assert (weak.missing_labels, weak.negative_weight) == ("weak_negative", 0.25)
    raw["tasks"][1]["kind"] = "binary"
    raw["tasks"][1]["columns"] = ["d"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(TaskmaskError, match=r"tasks\[1\] \(task 'weak'\).*multilabel tasks only"):
        load_config(path)


def test_a_saved_model_keeps_the_strategy(tmp_path: Path) -> None:
    tasks = [ml("tags", "weak_negative", negative_weight=0.4)]
    x = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    labels = np.where(x[:, :3] > 0, 1.0, np.nan)
    model = fit(x, {"tags": labels}, tasks, epochs=1, progress=False).model
    save_model(model, tmp_path / "model")
    meta = json.loads((tmp_path / "model" / META_FILE).read_text())
    assert meta["tasks"][0]["missing_labels"] == "weak_negative"
    assert meta["tasks"][0]["negative_weight"] == 0.4
    assert load_model(tmp_path / "model").tasks == model.tasks


def test_train_from_yaml_writes_the_strategy_into_the_run(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 2))
    table = {"x0": x[:, 0], "x1": x[:, 1]}
    table.update({name: np.where(x[:, j] > 0, 1.0, np.nan) for j, name in enumerate("ab")})
    pd.DataFrame(table).to_csv(tmp_path / "train.csv", index=False)
    task = {"name": "tags", "kind": "multilabel", "columns": ["a", "b"]}
    task.update({"missing_labels": "expected_positive", "expected_positives": 1.0})
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
    assert (saved.missing_labels, saved.expected_positives) == ("expected_positive", 1.0)
    (spec,) = load_config(run / "config.yaml").tasks
    assert spec.missing_labels == "expected_positive"


K = 5


def multilabel_problem(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features and full 0/1 labels of ``K`` logistic labels; rows with no positive dropped."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    weights = np.random.default_rng(99).normal(size=(4, K)) * 1.5
    y = (rng.random((n, K)) < 1 / (1 + np.exp(0.8 - x @ weights))).astype(float)
    keep = y.sum(1) > 0
    return x[keep], y[keep]


def single_positive(y: np.ndarray, seed: int) -> np.ndarray:
    """One positive per row kept at random, every other label missing (NaN): missing not at
    random, since a missing label is more often negative than the full labels are."""
    rng = np.random.default_rng(seed)
    observed = np.full(y.shape, np.nan)
    for i, row in enumerate(y):
        observed[i, rng.choice(np.flatnonzero(row))] = 1.0
    return observed


@pytest.fixture(scope="module")
def single_positive_runs() -> dict[str, Any]:
    x, y = multilabel_problem(1200, seed=0)
    x_test, y_test = multilabel_problem(1000, seed=1)
    k_true = float(y.sum(1).mean())
    strategies = {
        "ignore": {},
        "negative": {},
        "weak_negative": {},
        "expected_positive": {"expected_positives": k_true},
        "expected_positive_strong": {"expected_positives": k_true, "expected_positive_weight": 200},
    }
    runs = {"k_true": k_true, "test_count": float(y_test.sum(1).mean())}
    for strategy, options in strategies.items():
        kind = strategy.removesuffix("_strong")
        task = Task(name="tags", kind="multilabel", missing_labels=kind, **options)
        model = fit(
            x,
            {"tags": single_positive(y, seed=0)},
            [task],
            trunk=MLPConfig(hidden=(32,)),
            epochs=25,
            batch_size=64,
            lr=1e-2,
            seed=0,
            progress=False,
            train_metrics=False,
        ).model
        probs = torch.sigmoid(raw_outputs(model, torch.from_numpy(x_test))["tags"]).numpy()
        mean_ap = np.mean([average_precision_score(y_test[:, j], probs[:, j]) for j in range(K)])
        runs[strategy] = {"count": float(probs.sum(1).mean()), "map": float(mean_ap)}
    return runs


def test_single_positive_labels_ignore_predicts_every_label_positive(
    single_positive_runs: dict[str, Any],
) -> None:
    runs = single_positive_runs
    assert 1.8 < runs["k_true"] < 2.5  # several positives per row, one observed
    assert runs["ignore"]["count"] > K - 0.5  # only positives seen: everything goes to 1


def test_single_positive_labels_assume_negative_biases_probabilities_down(
    single_positive_runs: dict[str, Any],
) -> None:
    runs = single_positive_runs
    # one observed positive per row and the rest taken negative: about one positive predicted
    assert runs["negative"]["count"] < 1.3 < runs["test_count"] - 0.5
    # down-weighted negatives land in between
    assert runs["negative"]["count"] < runs["weak_negative"]["count"] < runs["ignore"]["count"]
    assert runs["negative"]["map"] > runs["ignore"]["map"] + 0.2


def test_single_positive_labels_expected_positive_recovers_the_label_count(
    single_positive_runs: dict[str, Any],
) -> None:
    runs = single_positive_runs
    gap = {
        name: abs(run["count"] - runs["test_count"])
        for name, run in runs.items()
        if isinstance(run, dict)
    }
    # the default weight (lambda = k) pulls the count towards k_hat; a large one all the way
    assert gap["expected_positive_strong"] < min(0.25, gap["expected_positive"])
    assert gap["expected_positive"] < min(0.9, gap["negative"] - 0.2, gap["ignore"] - 0.2)
    assert runs["expected_positive"]["map"] > runs["ignore"]["map"] + 0.2
