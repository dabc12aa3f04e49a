"""The packed batch loss gives the same per-task (sum, count) as `task_loss` task by task."""

import contextlib

import pytest
import torch

from taskmask.data import MultiTaskData
from taskmask.functional import EncodedLabels, LossTerm
from taskmask.model import MLPConfig, MLPTrunk, MultiTaskModel
from taskmask.tasks import Task, task_loss
from taskmask.training._batch_loss import PACKED, BatchLoss

TASKS = (
    Task(name="a", kind="binary"),
    Task(name="b", kind="multilabel", labels=("x", "y", "z")),
    Task(name="c", kind="multiclass", labels=("p", "q")),
    Task(name="d", kind="binary", pos_weight=3.0),
    Task(name="e", kind="regression", n_outputs=2),
)


def _batch(n: int, seed: int) -> tuple[dict[str, torch.Tensor], MultiTaskData]:
    g = torch.Generator().manual_seed(seed)
    outputs, labels = {}, {}
    for task in TASKS:
        width = task.width
        outputs[task.name] = torch.randn(n, width, generator=g, requires_grad=True)
        if task.kind == "multiclass":
            target = torch.randint(0, width, (n,), generator=g)
            observed = torch.rand(n, generator=g) < 0.6
        else:
            target = torch.randn(n, width, generator=g)
            if task.kind != "regression":
                target = (target > 0).float()
            observed = torch.rand(n, width, generator=g) < 0.6
        labels[task.name] = EncodedLabels(target, observed)
    return outputs, MultiTaskData(torch.zeros(n, 1), labels)


def _plan(loss_fns=None) -> BatchLoss:
    pos_weights = {t.name: None if t.pos_weight is None else torch.tensor([3.0]) for t in TASKS}
    return BatchLoss(
        TASKS, loss_fns=loss_fns or {}, pos_weights=pos_weights, device=torch.device("cpu")
    )


@pytest.mark.parametrize("seed", range(5))
def test_packed_terms_equal_task_by_task_terms(seed: int) -> None:
    outputs, data = _batch(40, seed)
    plan = _plan()
    packed = plan.pack(data)
    assert PACKED in packed.labels and "a" not in packed.labels and "c" in packed.labels
    sums, counts = plan(outputs, packed)
    for i, task in enumerate(TASKS):
        enc = data.labels[task.name]
        weight = torch.tensor([3.0]) if task.pos_weight else None
        term = task_loss(task, outputs[task.name], enc.target, enc.observed, pos_weight=weight)
        torch.testing.assert_close(sums[i], term.sum, rtol=1e-6, atol=1e-6)
        assert counts[i] == term.count
        (grad_packed,) = torch.autograd.grad(sums[i], outputs[task.name], retain_graph=True)
        (grad_single,) = torch.autograd.grad(term.sum, outputs[task.name])
        torch.testing.assert_close(grad_packed, grad_single, rtol=1e-6, atol=1e-7)


def test_unpack_restores_every_task_label() -> None:
    _, data = _batch(10, 0)
    plan = _plan()
    unpacked = plan.unpack(plan.pack(data).labels)
    assert set(unpacked) == set(data.labels)
    for name, enc in data.labels.items():
        assert torch.equal(unpacked[name].target, enc.target)
        assert torch.equal(unpacked[name].observed, enc.observed)


def test_a_task_absent_from_the_data_has_zero_sum_and_count() -> None:
    outputs, data = _batch(10, 1)
    labels = {k: v for k, v in data.labels.items() if k not in ("a", "c")}
    plan = _plan()
    sums, counts = plan(outputs, plan.pack(MultiTaskData(data.inputs, labels)))
    assert sums[0] == 0 and counts[0] == 0 and sums[2] == 0 and counts[2] == 0
    assert torch.isfinite(sums).all() and counts[1] > 0


def test_a_custom_loss_takes_its_task_out_of_the_packed_block() -> None:
    outputs, data = _batch(10, 2)

    def zero(task, output, target, observed):
        return LossTerm(output.sum() * 0.0, torch.tensor(7.0))

    plan = _plan({"b": zero})
    assert [t.name for t in plan.packed] == ["a", "d"]
    sums, counts = plan(outputs, plan.pack(data))
    assert sums[1] == 0 and counts[1] == 7


def _model_and_data(seed: int) -> tuple[MultiTaskModel, MultiTaskData]:
    """Packed tasks in two output blocks, one of them mixed with other kinds."""
    torch.manual_seed(seed)
    tasks = (
        *TASKS,
        Task(name="f", kind="binary", attach_to="layer1"),
        Task(name="g", kind="binary", attach_to="layer1"),
    )
    model = MultiTaskModel(MLPTrunk(4, MLPConfig(hidden=(6, 5))), tasks, (4,))
    _, data = _batch(30, seed)
    g = torch.Generator().manual_seed(seed)
    labels = dict(data.labels)
    for name in ("f", "g"):
        labels[name] = EncodedLabels(
            (torch.rand(30, 1, generator=g) < 0.5).float(), torch.rand(30, 1, generator=g) < 0.6
        )
    return model, MultiTaskData(torch.randn(30, 4, generator=g), labels)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("fused", [False, True])
def test_reading_output_blocks_gives_the_task_by_task_terms(seed: int, fused: bool) -> None:
    model, data = _model_and_data(seed)
    pos_weights = {
        t.name: None if t.pos_weight is None else torch.tensor([3.0]) for t in model.tasks
    }
    cpu = torch.device("cpu")
    by_block = BatchLoss(
        model.tasks, loss_fns={}, pos_weights=pos_weights, device=cpu, layout=model.layout
    )
    by_task = BatchLoss(model.tasks, loss_fns={}, pos_weights=pos_weights, device=cpu)
    assert [t.name for t in by_block.packed] == ["a", "b", "d", "f", "g"]
    assert [(i, None if kept is None else kept.tolist()) for i, kept in by_block.pieces] == [
        (0, [0, 1, 2, 3, 6]),
        (1, None),
    ]
    with model.fused_heads() if fused else contextlib.nullcontext():
        outputs = model(data.inputs)
        sums, counts = by_block(outputs, by_block.pack(data))
        expected_sums, expected_counts = by_task(dict(outputs), by_task.pack(data))
        torch.testing.assert_close(sums, expected_sums, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(counts, expected_counts, rtol=0.0, atol=0.0)
        (grad,) = torch.autograd.grad(sums.sum(), outputs.blocks[0], retain_graph=True)
        (expected_grad,) = torch.autograd.grad(expected_sums.sum(), outputs.blocks[0])
        torch.testing.assert_close(grad, expected_grad, rtol=1e-6, atol=1e-7)
    labels = by_block.unpack(by_block.pack(data).labels)
    for name, enc in data.labels.items():
        assert torch.equal(labels[name].target, enc.target) and torch.equal(
            labels[name].observed, enc.observed
        )
