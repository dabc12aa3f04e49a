"""The multi-task model: heads see only their own loss, empty tasks change nothing."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from taskmask.errors import TaskmaskError
from taskmask.functional import LossTerm
from taskmask.model import MLPConfig, MLPTrunk, MultiTaskModel
from taskmask.tasks import Task, TaskKindSpec, register_kind, task_loss, unregister_kind

FAST = settings(max_examples=25, deadline=None)
N_FEATURES = 5


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """Tensors here are tiny: intra-op threads only add contention on a busy CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


Labels = dict[str, tuple[torch.Tensor, torch.Tensor]]

seeds = st.integers(min_value=0, max_value=2**31 - 1)
norms = st.sampled_from([None, "layer", "batch"])
kinds = st.sampled_from(["binary", "multilabel", "multiclass", "regression"])


def base_tasks() -> list[Task]:
    return [
        Task(name="smoker", kind="binary", weight=0.5),
        Task(name="tags", kind="multilabel", labels=("x", "y", "z"), weight=2.0),
        Task(name="species", kind="multiclass", labels=("cat", "dog", "eel"), attach_to="layer1"),
        Task(name="pos", kind="regression", n_outputs=2, loss="huber", weight=1.5),
    ]


def make_task(name: str, kind: str, **options: object) -> Task:
    if kind == "multiclass":
        return Task(name=name, kind=kind, labels=("a", "b", "c", "d"), **options)
    if kind in ("multilabel", "regression"):
        return Task(name=name, kind=kind, n_outputs=3, **options)
    return Task(name=name, kind=kind, **options)


def make_labels(task: Task, n: int, gen: torch.Generator, rate: float) -> tuple[torch.Tensor, ...]:
    if task.kind == "multiclass":
        target = torch.randint(0, task.width, (n,), generator=gen)
    elif task.kind == "regression":
        target = torch.randn(n, task.width, generator=gen)
    else:
        target = torch.randint(0, 2, (n, task.width), generator=gen).float()
    observed = torch.rand(target.shape, generator=gen) < rate
    return target, observed


def make_model(tasks: list[Task], hidden: tuple[int, ...], norm: str | None) -> MultiTaskModel:
    trunk = MLPTrunk(N_FEATURES, MLPConfig(hidden=hidden, norm=norm))
    return MultiTaskModel(trunk, tasks, (N_FEATURES,))


def total_loss(model: MultiTaskModel, x: torch.Tensor, labels: Labels) -> torch.Tensor:
    """Weighted sum over tasks of the per-task mean over observed entries."""
    outputs = model(x)
    total = torch.zeros(())
    for task in model.tasks:
        total = total + task.weight * task_loss(task, outputs[task.name], *labels[task.name]).mean()
    return total


def is_zero(grad: torch.Tensor | None) -> bool:
    return grad is None or torch.equal(grad, torch.zeros_like(grad))


@FAST
@given(
    seed=seeds,
    n=st.integers(min_value=2, max_value=10),
    kind=kinds,
    position=st.integers(min_value=0, max_value=4),
    weight=st.floats(min_value=0.0, max_value=5.0),
    attach=st.sampled_from([None, "layer1", "layer2"]),
    norm=norms,
)
def test_appending_an_all_missing_task_changes_neither_loss_nor_gradients(
    seed: int, n: int, kind: str, position: int, weight: float, attach: str | None, norm: str | None
) -> None:
    extra = make_task("extra", kind, weight=weight, attach_to=attach)
    tasks = base_tasks()
    torch.manual_seed(seed)
    full = make_model([*tasks[:position], extra, *tasks[position:]], (7, 6), norm)
    small = make_model(tasks, (7, 6), norm)
    small.load_state_dict(
        {
            key: value
            for key, value in full.state_dict().items()
            if not key.startswith("heads.extra.")
        }
    )
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, N_FEATURES, generator=gen)
    labels = {task.name: make_labels(task, n, gen, rate=0.6) for task in tasks}
    target, observed = make_labels(extra, n, gen, rate=0.0)
    garbage = target.masked_fill(~observed, -7 if kind == "multiclass" else math.nan)
    labels["extra"] = (garbage, observed)

    loss_full, loss_small = total_loss(full, x, labels), total_loss(small, x, labels)
    loss_full.backward()
    loss_small.backward()

    assert torch.isfinite(loss_full)
    assert torch.equal(loss_full, loss_small)
    grads_full = dict(full.named_parameters())
    for name, parameter in small.named_parameters():
        assert parameter.grad is not None, name
        assert torch.equal(grads_full[name].grad, parameter.grad), name
    assert all(is_zero(p.grad) for p in full.heads["extra"].parameters())


@FAST
@given(seed=seeds, n=st.integers(min_value=1, max_value=10), norm=norms)
def test_one_tasks_loss_leaves_every_other_head_at_zero_gradient(
    seed: int, n: int, norm: str | None
) -> None:
    torch.manual_seed(seed)
    model = make_model(base_tasks(), (7, 6), norm if n > 1 else None)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, N_FEATURES, generator=gen)
    for task in model.tasks:
        target, observed = make_labels(task, n, gen, rate=0.5)
        observed.view(-1)[0] = True
        model.zero_grad(set_to_none=True)
        task_loss(task, model(x)[task.name], target, observed).mean().backward()
        own = model.heads[task.name].bias.grad
        assert own is not None and own.abs().sum() > 0, task.name
        for other in model.task_names:
            if other != task.name:
                assert all(is_zero(p.grad) for p in model.heads[other].parameters()), other


@FAST
@given(
    seed=seeds,
    hidden=st.lists(st.integers(min_value=1, max_value=9), min_size=2, max_size=4),
    depth=st.integers(min_value=1, max_value=3),
    kind=kinds,
)
def test_head_attached_to_a_layer_reads_it_and_leaves_later_layers_untouched(
    seed: int, hidden: list[int], depth: int, kind: str
) -> None:
    depth = min(depth, len(hidden) - 1)
    layer = f"layer{depth}"
    task = make_task("early", kind, attach_to=layer)
    torch.manual_seed(seed)
    model = make_model([task, make_task("late", "regression")], tuple(hidden), None)
    head = model.heads["early"]
    assert head.in_features == hidden[depth - 1]
    assert model.heads["late"].in_features == hidden[-1]

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, N_FEATURES, generator=gen)
    output = model(x)["early"]
    assert output.shape == (4, task.width)
    features = x
    for block in list(model.trunk.children())[:depth]:
        features = block(features)
    torch.testing.assert_close(output, head(features), rtol=0.0, atol=0.0)

    target, observed = make_labels(task, 4, gen, rate=1.0)
    task_loss(task, output, target, observed).mean().backward()
    for name, parameter in model.trunk.named_parameters():
        index = int(name.split(".")[0].removeprefix("layer"))
        if index > depth:
            assert is_zero(parameter.grad), name
        else:
            assert parameter.grad is not None, name  # layers up to the attach point are trained


@pytest.mark.parametrize(
    ("task", "shape"),
    [
        (Task(name="b", kind="binary"), (3, 1)),
        (Task(name="ml", kind="multilabel", labels=("x", "y")), (3, 2)),
        (Task(name="c", kind="multiclass", labels=("a", "b", "c", "d")), (3, 4)),
        (Task(name="r", kind="regression"), (3, 1)),
        (Task(name="r", kind="regression", n_outputs=3), (3, 3)),
    ],
)
def test_output_shapes_per_kind(task: Task, shape: tuple[int, ...]) -> None:
    model = make_model([task], (4,), None)
    outputs = model(torch.zeros(3, N_FEATURES))
    assert list(outputs) == [task.name]
    assert outputs[task.name].shape == shape


def test_attach_to_an_inner_module_uses_its_flattened_output() -> None:
    task = Task(name="pre", kind="binary", attach_to="layer2.0")
    model = make_model([task], (3, 8, 2), None)
    assert model.heads["pre"].in_features == 8


def test_unknown_attach_point_raises_naming_the_task_and_layers() -> None:
    task = Task(name="b", kind="binary", attach_to="layer9")
    with pytest.raises(TaskmaskError) as info:
        make_model([task], (4, 4), None)
    text = str(info.value)
    assert "task 'b': attach_to='layer9'" in text
    assert "'layer1'" in text and "'layer2'" in text


def test_duplicate_or_no_tasks_raise() -> None:
    with pytest.raises(TaskmaskError, match="repeated: \\['b'\\]"):
        make_model([Task(name="b", kind="binary"), Task(name="b", kind="regression")], (4,), None)
    with pytest.raises(TaskmaskError, match="at least one task"):
        make_model([], (4,), None)


def test_wrong_input_shape_raises() -> None:
    model = make_model([Task(name="b", kind="binary")], (4,), None)
    with pytest.raises(TaskmaskError, match=r"expected inputs of shape \(N, 5\), got \(2, 4\)"):
        model(torch.zeros(2, 4))


def test_task_lookup() -> None:
    tasks = base_tasks()
    model = make_model(tasks, (4,), None)
    assert model.task_names == tuple(task.name for task in tasks)
    assert model.task("pos") is tasks[3]
    with pytest.raises(TaskmaskError, match="unknown task 'nope'"):
        model.task("nope")


def test_inputs_are_standardised_with_mean_and_scale() -> None:
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(N_FEATURES, generator=gen)
    scale = torch.rand(N_FEATURES, generator=gen) + 0.5
    tasks = [Task(name="r", kind="regression", n_outputs=2)]
    trunk = MLPTrunk(N_FEATURES, MLPConfig(hidden=(4,)))
    plain = MultiTaskModel(trunk, tasks, (N_FEATURES,))
    scaled = MultiTaskModel(trunk, tasks, (N_FEATURES,), input_mean=mean, input_scale=scale)
    scaled.heads.load_state_dict(plain.heads.state_dict())
    x = torch.randn(3, N_FEATURES, generator=gen)
    torch.testing.assert_close(scaled(x)["r"], plain((x - mean) / scale)["r"], rtol=1e-6, atol=1e-6)
    assert torch.equal(scaled.input_mean, mean.reshape(1, -1))


@pytest.mark.parametrize("training", [True, False])
def test_construction_keeps_the_trunks_mode(training: bool) -> None:
    trunk = MLPTrunk(N_FEATURES, MLPConfig(hidden=(4,), norm="batch"))
    trunk.train(training)
    model = MultiTaskModel(trunk, [Task(name="b", kind="binary")], (N_FEATURES,))
    assert model.trunk.training is training
    batch_norm = model.trunk.get_submodule("layer1.1")
    assert isinstance(batch_norm, nn.BatchNorm1d)
    assert batch_norm.num_batches_tracked.item() == 0  # the width probe left no trace


def _mixed_model() -> MultiTaskModel:
    """Two linear groups (trunk output, layer1) and tasks of every kind."""
    torch.manual_seed(0)
    tasks = [*base_tasks(), make_task("late", "binary"), make_task("deep", "regression")]
    tasks.append(make_task("early", "binary", attach_to="layer1"))
    return make_model(tasks, (7, 6), None)


def test_layout_groups_linear_heads_by_attach_point_in_task_order() -> None:
    model = _mixed_model()
    groups = [(g.attach, g.names, g.widths, g.linear) for g in model.layout.groups]
    assert groups == [
        ("", ("smoker", "tags", "pos", "late", "deep"), (1, 3, 2, 1, 3), True),
        ("layer1", ("species", "early"), (3, 1), True),
    ]
    outputs = model(torch.randn(4, N_FEATURES))
    assert [b.shape for b in outputs.blocks] == [(4, 10), (4, 4)]
    assert list(outputs) == list(model.task_names)
    torch.testing.assert_close(outputs["pos"], outputs.blocks[0][:, 4:6], rtol=0.0, atol=0.0)


def test_fused_heads_compute_the_same_outputs_with_the_same_state_dict() -> None:
    model = _mixed_model()
    x = torch.randn(9, N_FEATURES, generator=torch.Generator().manual_seed(1))
    before, state = dict(model(x)), model.state_dict()
    with model.fused_heads():
        assert model.fused is not None and sorted(model.fused) == ["0", "1"]
        assert not list(model.heads.parameters())  # the groups hold them
        fused_state = model.state_dict()
        assert list(fused_state) == list(state)
        for key, value in state.items():
            torch.testing.assert_close(fused_state[key], value, rtol=0.0, atol=0.0)
        inside = model(x)
        for name, output in before.items():
            torch.testing.assert_close(inside[name], output, rtol=1e-6, atol=1e-6)
    assert model.fused is None
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0.0, atol=0.0)


def test_loading_inside_fused_heads_fills_the_groups() -> None:
    model, other = _mixed_model(), _mixed_model()
    with torch.no_grad():
        for parameter in other.heads.parameters():
            parameter.add_(1.0)
    x = torch.randn(5, N_FEATURES)
    with model.fused_heads():
        model.load_state_dict(other.state_dict())
        inside = dict(model(x))
    for name, output in other(x).items():
        torch.testing.assert_close(inside[name], output, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(model(x)[name], output, rtol=0.0, atol=0.0)


def test_a_fused_task_without_labels_gets_exact_zero_gradient_and_keeps_it() -> None:
    model = _mixed_model()
    x = torch.randn(8, N_FEATURES)
    with model.fused_heads():
        outputs = model(x)
        target, observed = torch.ones(8, 1), torch.zeros(8, 1, dtype=torch.bool)
        loss = task_loss(model.task("late"), outputs["late"], target, observed).sum
        loss = loss + task_loss(model.task("smoker"), outputs["smoker"], target, ~observed).sum
        loss.backward()
        assert model.fused is not None
        weight_grad = model.fused["0"].weight.grad
        assert weight_grad is not None and weight_grad[0].abs().sum() > 0
    assert is_zero(model.heads["late"].weight.grad) and is_zero(model.heads["late"].bias.grad)
    smoker = model.heads["smoker"].weight.grad
    assert smoker is not None and smoker.abs().sum() > 0  # gradients come back per task


def test_a_head_of_its_own_stays_unfused() -> None:
    model = make_model(base_tasks(), (7, 6), None)
    model.heads["pos"] = nn.Sequential(nn.Linear(6, 2))  # not a plain nn.Linear any more
    with model.fused_heads():
        assert model.fused is not None and "pos" in dict(model.heads.named_children())
        assert len(list(model.heads["pos"].parameters())) == 2
        assert sorted(model.fused) == ["1"]  # the layer1 group; the trunk group cannot fuse


def test_a_kind_with_its_own_head_is_a_group_of_its_own() -> None:
    def loss(input: torch.Tensor, target: torch.Tensor, observed: torch.Tensor) -> LossTerm:
        total = torch.where(observed, (input - target) ** 2, 0.0).sum()
        return LossTerm(total, observed.sum().to(total.dtype))

    spec = TaskKindSpec(
        loss=loss,
        metrics=lambda p, t, o: {"n": float(o.sum())},
        summary="n",
        head=lambda task, d: nn.Sequential(nn.Linear(d, 1), nn.Tanh()),
    )
    plain = TaskKindSpec(loss=loss, metrics=lambda p, t, o: {"n": 0.0}, summary="n")
    register_kind("squashed", spec)
    register_kind("plainly", plain)
    try:
        tasks = [
            make_task("a", "binary"),
            Task(name="s", kind="squashed"),
            Task(name="p", kind="plainly"),
        ]
        model = make_model(tasks, (7, 6), None)
        groups = [(g.names, g.linear) for g in model.layout.groups]
        assert groups == [(("a", "p"), True), (("s",), False)]
        x = torch.randn(3, N_FEATURES)
        with model.fused_heads():
            assert model.fused is not None and sorted(model.fused) == ["0"]
            inside = dict(model(x))
        assert inside["s"].abs().max() < 1
        for name, output in model(x).items():
            torch.testing.assert_close(inside[name], output, rtol=1e-6, atol=1e-6)
    finally:
        unregister_kind("squashed")
        unregister_kind("plainly")
