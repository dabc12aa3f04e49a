"""User-defined task kinds: a toy contrastive kind on pairs is registered, trained, saved,
loaded, used to predict and evaluated through the public API; a missing pair label adds nothing,
gets exactly zero gradient and never counts in a metric; an unregistered kind is named."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

import taskmask
from taskmask import LossTerm, PairConfig, Task, TaskKindSpec, TaskmaskError
from taskmask.data import make_data
from taskmask.functional import EncodedLabels, Undefined
from taskmask.model import MLPConfig, split_pair
from taskmask.tasks import (
    encode_labels,
    encode_numbers,
    get_kind,
    higher_is_better,
    known_kinds,
    task_metrics,
)
from taskmask.training import BatchLoss
from taskmask.training._early_stopping import EarlyStopping, Stopper

KIND = "toy_contrastive"
MARGIN = 1.0


class Distance(nn.Module):
    """The Euclidean distance between the two halves of a pair trunk's output, ``(N, 1)``."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        first, second = split_pair(features)
        return (first - second).pow(2).sum(1, keepdim=True).clamp(min=1e-7).sqrt()


def contrastive(input: torch.Tensor, target: torch.Tensor, observed: torch.Tensor) -> LossTerm:
    same = torch.where(observed, target, 0.0)
    loss = same * input.pow(2) + (1 - same) * torch.relu(MARGIN - input).pow(2)
    loss = torch.where(observed, loss, 0.0)
    return LossTerm(loss.sum(), observed.sum().to(loss.dtype))


def pair_metrics(preds: np.ndarray, target: np.ndarray, observed: np.ndarray) -> dict[str, Any]:
    seen = observed[:, 0]
    if not seen.any():
        return {"pair_accuracy": Undefined("no observed label"), "n_observed": 0.0}
    same = preds[seen, 0] < 0.5
    accuracy = float(np.mean(same == (target[seen, 0] == 1)))
    return {"pair_accuracy": accuracy, "n_observed": float(seen.sum())}


def read_flags(task: Task, raw: Any, where: str) -> EncodedLabels:
    encoded = encode_numbers(raw, width=1, sentinel=task.sentinel, source=where)
    bad = encoded.observed & (encoded.target != 0) & (encoded.target != 1)
    if bool(bad.any()):
        raise TaskmaskError(f"{where}: pair labels are 0 (different), 1 (same) or missing")
    return encoded


SPEC = TaskKindSpec(
    loss=contrastive,
    metrics=pair_metrics,
    summary="pair_accuracy",
    width=lambda task: 1,
    encode=read_flags,
    head=lambda task, in_features: Distance(),
    decide=lambda distance: distance < 0.5,
    targets="flags",
)


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    taskmask.register_kind(KIND, SPEC)
    yield
    if KIND in known_kinds():
        taskmask.unregister_kind(KIND)


def toy_pairs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of 4-d points from 3 clusters: inputs (n, 2, 4), same flags (n,), classes (n, 2)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(3, 4))
    classes = rng.integers(0, 3, size=(n, 2))
    classes[: n // 2, 1] = classes[: n // 2, 0]  # half the pairs are the same class
    x = centres[classes] + rng.normal(scale=0.5, size=(n, 2, 4))
    return x.astype(np.float32), (classes[:, 0] == classes[:, 1]).astype(float), classes


def test_an_unregistered_kind_is_a_validation_error_naming_the_task_and_the_kinds() -> None:
    with pytest.raises(ValidationError) as info:
        Task(name="pairs", kind="siamese")
    text = str(info.value)
    assert "task 'pairs': unknown kind 'siamese'" in text
    assert "'binary'" in text and f"'{KIND}'" in text and "register_kind" in text


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("binary", "built-in kind"),
        ("a.b", "without '.'"),
        ("", "non-empty"),
        (KIND, "already registered"),
    ],
)
def test_register_kind_rejects_bad_names(name: str, message: str) -> None:
    with pytest.raises(TaskmaskError, match=message):
        taskmask.register_kind(name, SPEC)


def test_register_kind_rejects_a_non_spec_and_replaces_on_request() -> None:
    with pytest.raises(TaskmaskError, match="expected a TaskKindSpec, got dict"):
        taskmask.register_kind("other", {"loss": contrastive})  # type: ignore[arg-type]
    other = TaskKindSpec(loss=contrastive, metrics=pair_metrics, summary="pair_accuracy")
    taskmask.register_kind(KIND, other, replace=True)
    assert get_kind(KIND) is other
    taskmask.unregister_kind(KIND)
    with pytest.raises(TaskmaskError, match=f"kind '{KIND}' is not registered"):
        get_kind(KIND)


def test_width_output_names_and_no_default_sentinel() -> None:
    task = Task(name="pair", kind=KIND)
    assert (task.width, task.output_names, task.missing_sentinel) == (1, ("pair",), None)
    wide = Task(name="w", kind=KIND, labels=("a", "b"))
    taskmask.register_kind(
        "wide", TaskKindSpec(loss=contrastive, metrics=pair_metrics, summary="pair_accuracy")
    )
    try:
        assert Task(name="w", kind="wide", n_outputs=3).output_names == ("w_0", "w_1", "w_2")
    finally:
        taskmask.unregister_kind("wide")
    assert wide.width == 1  # this kind's width function says 1 whatever the labels


def _contract_inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    distance = torch.rand((12, 1), generator=generator, dtype=torch.float64) * 2
    target = torch.randint(0, 2, (12, 1), generator=generator).double()
    observed = torch.rand((12, 1), generator=generator) < 0.6
    return distance, target, observed


@pytest.mark.parametrize("garbage", [math.nan, math.inf, -7.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_missing_pair_label_adds_nothing_and_gets_zero_gradient(
    garbage: float, seed: int
) -> None:
    task = Task(name="pair", kind=KIND)
    distance, target, observed = _contract_inputs(seed)
    losses, gradients = [], []
    for filled in (target, torch.where(observed, target, garbage)):
        input = distance.clone().requires_grad_()
        term = taskmask.task_loss(task, input, filled, observed)
        term.sum.backward()
        losses.append(term)
        gradients.append(input.grad)
    assert losses[0].sum.item() == losses[1].sum.item()
    assert losses[0].count.item() == losses[1].count.item() == observed.sum().item()
    assert torch.equal(gradients[0], gradients[1])
    assert torch.all(gradients[1][~observed] == 0)
    assert torch.isfinite(gradients[1]).all()
    seen = observed[:, 0]
    subset = contrastive(distance[seen], target[seen], observed[seen])
    torch.testing.assert_close(losses[0].sum.detach(), subset.sum, rtol=1e-12, atol=0)


def test_an_all_missing_pair_task_gives_exact_zero_with_a_graph() -> None:
    task = Task(name="pair", kind=KIND)
    distance = torch.rand((5, 1), requires_grad=True)
    target = torch.full((5, 1), math.nan)
    term = taskmask.task_loss(task, distance, target, torch.zeros((5, 1), dtype=torch.bool))
    assert term.sum.item() == 0.0 and term.count.item() == 0.0
    assert term.mean().item() == 0.0
    term.mean().backward()
    assert distance.grad is not None and torch.all(distance.grad == 0)


def test_a_loss_that_returns_a_float_is_named() -> None:
    spec = TaskKindSpec(
        loss=lambda i, t, o: 0.0,  # type: ignore[arg-type,return-value]
        metrics=pair_metrics,
        summary="pair_accuracy",
    )
    taskmask.register_kind("bad_loss", spec)
    try:
        task = Task(name="b", kind="bad_loss")
        with pytest.raises(TaskmaskError, match="kind 'bad_loss' must return LossTerm"):
            taskmask.task_loss(task, torch.zeros(2, 1), torch.zeros(2, 1), torch.ones(2, 1).bool())
    finally:
        taskmask.unregister_kind("bad_loss")


def test_metrics_count_observed_pairs_only() -> None:
    task = Task(name="pair", kind=KIND)
    distance = torch.tensor([[0.1], [0.9], [0.2], [0.3], [2.0]])
    target = torch.tensor([[1.0], [0.0], [0.0], [1.0], [1.0]])
    observed = torch.tensor([[True], [True], [True], [False], [False]])
    metrics = task_metrics(task, distance, target, observed)
    assert metrics == {"pair_accuracy": pytest.approx(2 / 3), "n_observed": 3.0}
    garbage = torch.where(observed, target, 0.0)
    assert task_metrics(task, distance, garbage, observed) == metrics
    none = task_metrics(task, distance, target, torch.zeros_like(observed))
    assert isinstance(none["pair_accuracy"], Undefined)


def test_metrics_without_the_summary_key_are_named() -> None:
    spec = TaskKindSpec(loss=contrastive, metrics=lambda p, t, o: {"x": 1.0}, summary="auc_pair")
    taskmask.register_kind("no_summary", spec)
    try:
        task = Task(name="s", kind="no_summary")
        with pytest.raises(TaskmaskError, match="lack its summary 'auc_pair'"):
            task_metrics(task, torch.zeros(2, 1), torch.zeros(2, 1), torch.ones(2, 1).bool())
    finally:
        taskmask.unregister_kind("no_summary")


def test_the_summary_direction_drives_early_stopping() -> None:
    assert higher_is_better(f"val/pair/{SPEC.summary}")
    spec = TaskKindSpec(
        loss=contrastive, metrics=pair_metrics, summary="pair_gap", higher_is_better=False
    )
    taskmask.register_kind("gap", spec)
    try:
        assert not higher_is_better("pair_gap") and not higher_is_better("task.pair_gap")
        stopper = Stopper(EarlyStopping(monitor="val/pair/pair_gap", patience=1), True)
        model = nn.Linear(1, 1)
        assert not stopper.update({"val/pair/pair_gap": 0.5}, model)
        assert not stopper.update({"val/pair/pair_gap": 0.4}, model)
        assert stopper.best == 0.4
        clash = TaskKindSpec(loss=contrastive, metrics=pair_metrics, summary="pair_gap")
        with pytest.raises(TaskmaskError, match="opposite direction"):
            taskmask.register_kind("clash", clash)
    finally:
        taskmask.unregister_kind("gap")


def test_labels_are_read_with_the_kinds_encoder_and_missing_values_zeroed() -> None:
    task = Task(name="pair", kind=KIND, sentinel=-1)
    raw = np.array([1.0, np.nan, 0.0, -1.0], dtype=object)
    raw[1] = None
    encoded = encode_labels(task, raw)
    assert encoded.observed.tolist() == [[True], [False], [True], [False]]
    assert encoded.target.tolist() == [[1.0], [0.0], [0.0], [0.0]]
    with pytest.raises(TaskmaskError, match=r"task 'pair'.*0 \(different\), 1 \(same\)"):
        encode_labels(task, [0.0, 2.0], source="pairs.csv")


def test_an_encoder_returning_bad_shapes_is_named() -> None:
    def bad(task: Task, raw: Any, where: str) -> EncodedLabels:
        return EncodedLabels(torch.zeros(len(raw), 1), torch.ones(len(raw), 2, dtype=torch.bool))

    spec = TaskKindSpec(loss=contrastive, metrics=pair_metrics, summary="pair_accuracy", encode=bad)
    taskmask.register_kind("bad_encode", spec)
    try:
        with pytest.raises(TaskmaskError, match="kind 'bad_encode': encode must return a target"):
            encode_labels(Task(name="b", kind="bad_encode"), [1.0, 0.0], source="f.csv")
    finally:
        taskmask.unregister_kind("bad_encode")


def test_batch_loss_leaves_a_custom_kind_unpacked() -> None:
    tasks = [
        Task(name="a", kind="binary"),
        Task(name="b", kind="binary"),
        Task(name="p", kind=KIND),
    ]
    plan = BatchLoss(
        tasks, loss_fns={}, pos_weights=dict.fromkeys("abp"), device=torch.device("cpu")
    )
    assert [t.name for t in plan.packed] == ["a", "b"]
    assert [t.name for _, t in plan.single] == ["p"]
    x, same, _ = toy_pairs(10, 0)
    same[:3] = np.nan
    labels = {"a": same, "b": same, "p": same}
    data = plan.pack(make_data(x, labels, tasks))
    outputs = {"a": torch.zeros(10, 1), "b": torch.ones(10, 1), "p": torch.rand(10, 1)}
    sums, counts = plan(outputs, data)
    enc = encode_labels(tasks[2], same)
    expected = contrastive(outputs["p"], enc.target, enc.observed)
    assert sums[2].item() == pytest.approx(expected.sum.item())
    assert counts.tolist() == [7.0, 7.0, 7.0]


@pytest.fixture
def fitted() -> taskmask.FitResult:
    x, same, classes = toy_pairs(240, 0)
    same[::4] = np.nan  # a quarter of the pair labels missing
    first = classes[:, 0].astype(float)
    first[1::5] = np.nan
    tasks = [
        Task(name="pair", kind=KIND),
        Task(name="first", kind="multiclass", attach_to="first", n_outputs=3),
        Task(name="second", kind="multiclass", attach_to="second", n_outputs=3),
    ]
    labels = {"pair": same, "first": first, "second": classes[:, 1]}
    return taskmask.fit(
        x,
        labels,
        tasks,
        trunk=PairConfig(encoder=MLPConfig(hidden=(16, 8))),
        standardize=False,
        epochs=30,
        batch_size=32,
        lr=1e-2,
        progress=False,
    )


def test_fit_save_load_predict_and_evaluate_a_custom_kind(
    fitted: taskmask.FitResult, tmp_path: Path
) -> None:
    result = fitted
    history = result.history
    assert history["train/pair/loss"].iloc[-1] < 0.5 * history["train/pair/loss"].iloc[0]
    assert history["train/pair/n_observed"].iloc[-1] == 180  # 240 pairs, a quarter missing
    assert "pair" in dict(result.model.heads.named_children())
    assert not any(k.startswith("heads.pair.") for k in result.model.state_dict())

    x_test, same_test, _ = toy_pairs(200, 0)  # same clusters, fresh draws
    metrics = taskmask.evaluate(result.model, x_test, {"pair": same_test})
    assert metrics["pair"]["pair_accuracy"] > 0.9
    assert metrics["pair"]["n_observed"] == 200

    path = taskmask.save_model(result.model, tmp_path / "model")
    loaded = taskmask.load_model(path)
    predictions = taskmask.predict(loaded, x_test)
    before = taskmask.predict(result.model, x_test)
    np.testing.assert_array_equal(predictions["pair"].scores, before["pair"].scores)
    decisions = predictions["pair"].decisions
    assert decisions is not None and decisions.dtype == bool
    np.testing.assert_array_equal(decisions, predictions["pair"].scores < 0.5)
    frame = taskmask.predictions_frame(predictions)
    assert {"pair.output", "pair.pred", "first.pred", "second.pred"} <= set(frame.columns)
    assert frame["pair.pred"].tolist() == decisions[:, 0].tolist()

    hidden = same_test.copy()
    hidden[:50] = np.nan
    partial = taskmask.evaluate(loaded, x_test, {"pair": hidden})["pair"]
    expected = np.mean((predictions["pair"].scores[50:, 0] < 0.5) == (same_test[50:] == 1))
    assert partial["pair_accuracy"] == pytest.approx(expected)
    assert partial["n_observed"] == 150


def test_a_model_with_an_unregistered_kind_does_not_load(
    fitted: taskmask.FitResult, tmp_path: Path
) -> None:
    path = taskmask.save_model(fitted.model, tmp_path / "model")
    taskmask.unregister_kind(KIND)
    with pytest.raises(TaskmaskError) as info:
        taskmask.load_model(path)
    message = str(info.value)
    assert f"task 'pair' has kind '{KIND}', which is not registered" in message
    assert "model.json" in message and "register_kind" in message
    taskmask.register_kind(KIND, SPEC)
    assert taskmask.load_model(path).task("pair").kind == KIND


def test_missing_pair_labels_do_not_change_training() -> None:
    """Hiding the labels of some pairs and appending pairs whose label is missing gives the
    same gradients as training without those rows: checked on the first step's gradients."""
    x, same, _ = toy_pairs(16, 1)
    task = Task(name="pair", kind=KIND)
    trunk_config = PairConfig(encoder=MLPConfig(hidden=(8,)))
    torch.manual_seed(0)
    trunk = taskmask.model.build_trunk(trunk_config, (2, 4))
    model = taskmask.MultiTaskModel(trunk, [task], (2, 4))
    gradients = []
    for rows, labels in ((slice(0, 10), same[:10]), (slice(0, 16), np.r_[same[:10], [np.nan] * 6])):
        model.zero_grad()
        data = make_data(x[rows], {"pair": labels}, [task])
        enc = data.labels["pair"]
        term = taskmask.task_loss(task, model(data.inputs)["pair"], enc.target, enc.observed)
        term.mean().backward()
        gradients.append([p.grad.clone() for p in model.parameters()])  # type: ignore[union-attr]
    for a, b in zip(*gradients, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_the_custom_kinds_guide_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    page = Path(__file__).resolve().parents[2] / "docs" / "custom_kinds.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.DOTALL)
    assert len(blocks) == 1
    namespace: dict[str, Any] = {"print": lambda *args, **kwargs: None}
    try:
        exec(compile(blocks[0], str(page), "exec"), namespace)
    finally:
        if "contrastive" in known_kinds():
            taskmask.unregister_kind("contrastive")
    assert namespace["scores"]["pair"]["pair_accuracy"] > 0.9
    assert (tmp_path / "pair-model" / "model.safetensors").is_file()
    frame = namespace["frame"]
    assert set(frame["pair.pred"].unique()) <= {True, False} and len(frame) == 60
    assert namespace["loaded"].task_names == ("pair",)
