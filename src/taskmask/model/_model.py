"""The multi-task network: a shared trunk, one head per task, heads at any named trunk layer."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from taskmask.errors import TaskmaskError
from taskmask.model._heads import (
    FusedLinear,
    HeadLayout,
    HeadOutputs,
    TaskHeads,
    fuse,
    fused_state,
    per_task_state,
    unfuse,
)
from taskmask.tasks._outputs import check_prediction_columns
from taskmask.tasks._task import Task, check_unique_names, make_head


def _as_vector(out: torch.Tensor) -> torch.Tensor:
    """``(N, d)`` as is; a channel-first feature map ``(N, C, *positions)`` averaged over its
    positions, so a head on a convolutional block sees ``C`` features, not ``C x H x W``."""
    return out if out.ndim <= 2 else out.mean(dim=tuple(range(2, out.ndim)))


def _capture(store: dict[str, torch.Tensor], name: str, _m: nn.Module, _i: Any, out: Any) -> None:
    store[name] = out


class MultiTaskModel(nn.Module):
    """A trunk plus one linear head per task; ``forward(x)`` returns ``{task name: output}``
    as a `HeadOutputs` mapping: one block per `HeadGroup` (the plain linear heads at one attach
    point; a head with its own module), each task's output a column view of its block.

    Outputs are logits ``(N, k)`` for binary (k=1) and multilabel tasks, ``(N, C)`` logits for
    multiclass tasks, ``(N, k)`` values for regression; a user-defined kind may bring its own
    head module (`taskmask.tasks.TaskKindSpec.head`). A task whose ``attach_to`` names a trunk
    submodule (``dict(trunk.named_modules())`` key) reads that submodule's output (a feature
    map globally average-pooled); the others read the trunk's output. Inputs are standardised
    first with the buffers ``input_mean`` / ``input_scale`` when ``standardize`` (default: when
    either is given).
    ``feature_names`` names the columns of 1-D inputs (kept for saving and for reading tables
    at prediction time).

    ``heads[name]`` is the task's head module (``nn.Linear`` unless its kind brings one);
    within `fused_heads` (what `taskmask.training.Trainer.fit` trains) the linear heads of a
    group hold no parameters: ``fused[str(group index)]`` does, while ``state_dict`` and
    ``load_state_dict`` keep the per-task keys ``heads.<task>.weight`` / ``.bias``.
    """

    input_mean: torch.Tensor
    input_scale: torch.Tensor
    fused: nn.ModuleDict | None

    def __init__(
        self,
        trunk: nn.Module,
        tasks: Sequence[Task],
        input_shape: Sequence[int],
        *,
        input_mean: torch.Tensor | None = None,
        input_scale: torch.Tensor | None = None,
        feature_names: Sequence[str] | None = None,
        standardize: bool | None = None,
    ) -> None:
        super().__init__()
        tasks = tuple(tasks)
        check_unique_names(tasks)
        check_prediction_columns(tasks)
        self.trunk = trunk
        self.tasks = tasks
        self.input_shape = tuple(int(d) for d in input_shape)
        self.feature_names = None if feature_names is None else tuple(map(str, feature_names))
        if self.feature_names is not None and (len(self.input_shape), len(self.feature_names)) != (
            1,
            self.input_shape[0],
        ):
            raise TaskmaskError(
                f"{len(self.feature_names)} feature names for input shape {self.input_shape}"
            )
        shape = (1, *self.input_shape)
        mean = torch.zeros(shape) if input_mean is None else input_mean.reshape(shape).float()
        scale = torch.ones(shape) if input_scale is None else input_scale.reshape(shape).float()
        self.register_buffer("input_mean", mean)
        self.register_buffer("input_scale", scale)
        given = input_mean is not None or input_scale is not None
        self.standardize = given if standardize is None else standardize
        modules = dict(trunk.named_modules())
        for task in tasks:
            if task.attach_to is not None and task.attach_to not in modules:
                known = [name for name in modules if name]
                raise TaskmaskError(
                    f"task {task.name!r}: attach_to={task.attach_to!r} is not a trunk layer; "
                    f"known layers: {known}"
                )
        self._attach_points = sorted({t.attach_to for t in tasks if t.attach_to is not None})
        widths = self._feature_widths()
        self.heads = TaskHeads({t.name: make_head(t, widths[t.attach_to or ""]) for t in tasks})
        self.layout = HeadLayout.of(tasks)
        self.fused = None
        # within fused_heads, state dicts still speak per-task keys
        self.register_state_dict_post_hook(_per_task_state)  # type: ignore[no-untyped-call]
        self.register_load_state_dict_pre_hook(_fused_state)  # type: ignore[no-untyped-call]

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(task.name for task in self.tasks)

    def task(self, name: str) -> Task:
        for task in self.tasks:
            if task.name == name:
                return task
        raise TaskmaskError(f"unknown task {name!r}; tasks: {list(self.task_names)}")

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Trunk output under key ``""`` plus each attach point's output, as (N, d) vectors."""
        captured: dict[str, torch.Tensor] = {}
        modules = dict(self.trunk.named_modules()) if self._attach_points else {}
        handles = [
            modules[name].register_forward_hook(partial(_capture, captured, name))
            for name in self._attach_points
        ]
        try:
            if self.standardize:
                x = (x - self.input_mean) / self.input_scale
            captured[""] = self.trunk(x)
        finally:
            for handle in handles:
                handle.remove()
        for name, out in captured.items():
            if not isinstance(out, torch.Tensor) or len(out) != len(x):
                rows = len(out) if isinstance(out, torch.Tensor) else type(out).__name__
                where = f"layer {name!r}" if name else "output"
                raise TaskmaskError(
                    f"trunk {where} gives {rows} rows for {len(x)} inputs; a head must read "
                    "one row per input row"
                )
        return {name: _as_vector(out) for name, out in captured.items()}

    def _feature_widths(self) -> dict[str, int]:
        was_training = self.trunk.training
        self.trunk.eval()
        with torch.no_grad():
            probe = torch.zeros((2, *self.input_shape), device=self.input_mean.device)
            widths = {name: out.shape[1] for name, out in self._features(probe).items()}
        self.trunk.train(was_training)
        return widths

    def forward(self, x: torch.Tensor) -> HeadOutputs:
        if x.shape[1:] != self.input_shape:
            raise TaskmaskError(
                f"expected inputs of shape (N, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
            )
        features = self._features(x)
        return HeadOutputs(
            self.layout, [self._block(i, features) for i in range(len(self.layout.groups))]
        )

    def _block(self, index: int, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Group ``index``'s outputs ``(N, group width)``: one matmul when fused; otherwise
        head by head, so that a task with no observed label adds exact zeros to the trunk's
        gradient (one matmul over more columns may round it differently in the last bit)."""
        group = self.layout.groups[index]
        x = features[group.attach]
        if self.fused is not None and str(index) in self.fused:
            block = self.fused[str(index)]
            assert isinstance(block, FusedLinear)
            return F.linear(x, block.weight, block.bias)
        if len(group.names) == 1:
            return self.heads[group.names[0]](x)
        return torch.cat([self.heads[name](x) for name in group.names], dim=1)

    @contextmanager
    def fused_heads(self) -> Iterator[None]:
        """Within: each group of linear heads at one attach point is one parameter pair
        ``fused.<group index>.weight`` / ``.bias`` (the per-task head modules hold none); on
        leaving, per-task parameters (new ones) take the values and gradients back."""
        if self.fused is not None:
            yield
            return
        self.fused = fuse(self.heads, self.layout)
        try:
            yield
        finally:
            unfuse(self.heads, self.fused, self.layout)
            self.fused = None


def _per_task_state(model: nn.Module, state: dict[str, Any], prefix: str, _: Any) -> None:
    if isinstance(model, MultiTaskModel) and model.fused is not None:
        per_task_state(state, prefix, model.fused, model.layout)


def _fused_state(model: nn.Module, state: dict[str, Any], prefix: str, *_: Any) -> None:
    if isinstance(model, MultiTaskModel) and model.fused is not None:
        fused_state(state, prefix, model.fused, model.layout)


@torch.no_grad()
def raw_outputs(
    model: MultiTaskModel, inputs: torch.Tensor, *, batch_size: int = 4096
) -> dict[str, torch.Tensor]:
    """Head outputs for every task (auxiliary ones too), in eval mode, ``{task: (N, k)}``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    chunks: list[HeadOutputs] = [
        model(inputs[start : start + batch_size].to(device))
        for start in range(0, len(inputs), batch_size)
    ]
    model.train(was_training)
    return {name: torch.cat([c[name] for c in chunks]) for name in model.task_names}
