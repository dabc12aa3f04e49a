"""Grouped heads: the plain linear heads that read one attach point form one output block.

A model's heads fall into `HeadGroup` s: all plain linear heads (built-in kinds, and
user-defined kinds without their own ``head``) that read the same attach point form one group;
a head with its own module is a group of its own. `HeadOutputs` holds one output block per
group and hands out each task's output as a column view of its block, so that a loss over many
tasks can read whole blocks.

`FusedLinear` is a group's weights held as one parameter pair (`MultiTaskModel.fused_heads`,
what training uses): one matmul ``F.linear(features, weight, bias)`` and one optimiser tensor
per group instead of two per task. Unfused, the group's heads run one by one and their outputs
are concatenated: bit for bit what separate heads give, gradients included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from taskmask.errors import TaskmaskError
from taskmask.tasks._task import Task

_DOT = "%2E"
"""What a '.' of a task name becomes in its head's key (``nn.Module`` names cannot hold dots)."""
_MODULE_ATTRIBUTES = frozenset(vars(nn.ModuleDict()))
"""Instance attributes of a module (``training``, ``_modules``): not usable as keys either."""


def head_key(name: str) -> str:
    """The key of task ``name``'s head in `TaskHeads` and in state dicts (``heads.<key>.weight``):
    the name itself when it holds no '.' and is no attribute of ``nn.ModuleDict`` (so every key
    of a 0.1.0 model is unchanged); otherwise each '.' written ``%2E``, then a leading ``%`` if
    it still names an attribute (``values``, ``training``)."""
    key = name.replace(".", _DOT)
    return f"%{key}" if hasattr(nn.ModuleDict, key) or key in _MODULE_ATTRIBUTES else key


class TaskHeads(nn.ModuleDict):
    """The heads by task name: ``heads[name]``, ``name in heads`` and iteration speak task names,
    the modules are stored (and state-dict keys written) under `head_key` of each name. Two names
    with one key (``a.b`` and a literal ``a%2Eb``) are an error naming both."""

    def __init__(self, heads: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self._names: dict[str, str] = {}  # key: task name
        for name, head in heads.items():
            self[name] = head

    def __setitem__(self, name: str, head: nn.Module) -> None:
        key = head_key(name)
        if self._names.get(key, name) != name:
            raise TaskmaskError(
                f"tasks {self._names[key]!r} and {name!r} would share the head key {key!r}; "
                "rename one"
            )
        self._names[key] = name
        super().__setitem__(key, head)

    def __delitem__(self, name: str) -> None:
        key = head_key(name)
        super().__delitem__(key)
        del self._names[key]

    def __getitem__(self, name: str) -> nn.Module:
        return super().__getitem__(head_key(name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(head_key(name))

    def __iter__(self) -> Iterator[str]:
        return iter(self._names.values())

    def keys(self) -> Iterator[str]:  # type: ignore[override]
        return iter(self._names.values())

    def items(self) -> Iterator[tuple[str, nn.Module]]:  # type: ignore[override]
        return ((name, self[name]) for name in self._names.values())


@dataclass(frozen=True)
class HeadGroup:
    """Heads that read one attach point (``""``: the trunk's output), in task order.
    ``linear``: plain linear heads, one matmul; otherwise a single head with its own module."""

    attach: str
    names: tuple[str, ...]
    widths: tuple[int, ...]
    linear: bool

    @property
    def width(self) -> int:
        return sum(self.widths)


def is_plain_head(task: Task) -> bool:
    """Whether the task's head is ``nn.Linear(in_features, width)`` (no kind-specific head)."""
    return task.spec.head is None


@dataclass(frozen=True)
class HeadLayout:
    """The groups of a model's heads, in order of their first task, and where each task's
    output lies: ``where[name] = (group index, first column, width)``."""

    groups: tuple[HeadGroup, ...]
    names: tuple[str, ...]
    where: Mapping[str, tuple[int, int, int]]

    @classmethod
    def of(cls, tasks: Sequence[Task]) -> HeadLayout:
        members: dict[str, list[Task]] = {}  # attach point (linear) or task name: its tasks
        for task in tasks:
            key = f"linear:{task.attach_to or ''}" if is_plain_head(task) else f"own:{task.name}"
            members.setdefault(key, []).append(task)
        groups = tuple(
            HeadGroup(
                attach=group[0].attach_to or "",
                names=tuple(t.name for t in group),
                widths=tuple(t.width for t in group),
                linear=key.startswith("linear:"),
            )
            for key, group in members.items()
        )
        where: dict[str, tuple[int, int, int]] = {}
        for index, group in enumerate(groups):
            start = 0
            for name, width in zip(group.names, group.widths, strict=True):
                where[name] = (index, start, width)
                start += width
        return cls(groups, tuple(t.name for t in tasks), where)


class HeadOutputs(Mapping[str, torch.Tensor]):
    """``{task name: output (N, width)}`` in task order, stored as one block per `HeadGroup`
    (``blocks[i]``: ``(N, groups[i].width)``); a task's output is a column view of its block."""

    def __init__(self, layout: HeadLayout, blocks: Sequence[torch.Tensor]) -> None:
        self.layout = layout
        self.blocks = tuple(blocks)

    def __getitem__(self, name: str) -> torch.Tensor:
        index, start, width = self.layout.where[name]
        block = self.blocks[index]
        return block if width == block.shape[1] else block.narrow(1, start, width)

    def __iter__(self) -> Iterator[str]:
        return iter(self.layout.names)

    def __len__(self) -> int:
        return len(self.layout.names)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> HeadOutputs:
        """``fn`` applied to every block (``.float()``, ``.detach()``): one call per group."""
        return HeadOutputs(self.layout, [fn(block) for block in self.blocks])

    @staticmethod
    def cat(parts: Sequence[HeadOutputs]) -> HeadOutputs:
        """The rows of ``parts`` (of one layout) one after the other."""
        blocks = zip(*(part.blocks for part in parts), strict=True)
        return HeadOutputs(parts[0].layout, [torch.cat(list(block)) for block in blocks])


class FusedLinear(nn.Module):
    """The linear heads of one group as one ``weight`` ``(sum of widths, in_features)`` and
    one ``bias``: rows in the group's task order."""

    def __init__(self, heads: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.cat([h.weight.detach() for h in heads]))
        self.bias = nn.Parameter(torch.cat([h.bias.detach() for h in heads]))


def _linear(head: nn.Module) -> nn.Linear:
    assert isinstance(head, nn.Linear)
    return head


def _can_fuse(heads: Sequence[nn.Module]) -> bool:
    """Linear heads with biases, all trainable, of one dtype and device."""
    if not all(type(h) is nn.Linear and h.bias is not None for h in heads):
        return False
    tensors = [t for h in heads for t in (_linear(h).weight, _linear(h).bias)]
    same = {(t.dtype, t.device) for t in tensors}
    return len(same) == 1 and all(t.requires_grad for t in tensors)


def fuse(heads: TaskHeads, layout: HeadLayout) -> nn.ModuleDict:
    """``{str(group index): FusedLinear}`` for each linear group whose heads can fuse; their
    per-task parameters are removed from ``heads``."""
    fused = nn.ModuleDict()
    for index, group in enumerate(layout.groups):
        members = [heads[name] for name in group.names]
        if group.linear and _can_fuse(members):
            fused[str(index)] = FusedLinear([_linear(h) for h in members])
            for head in members:
                del head.weight, head.bias
    return fused


def _split(tensor: torch.Tensor | None, widths: Sequence[int]) -> list[torch.Tensor | None]:
    """Row blocks of ``tensor`` (detached copies), ``None`` for each when it is ``None``."""
    if tensor is None:
        return [None] * len(widths)
    return [part.clone() for part in torch.split(tensor.detach(), list(widths))]


def _rows(
    group: HeadGroup, module: FusedLinear
) -> Iterator[tuple[str, nn.Parameter, nn.Parameter]]:
    """Per task of ``group``: new parameters with its rows of ``module``, values and grads."""
    parts = zip(
        group.names,
        _split(module.weight, group.widths),
        _split(module.bias, group.widths),
        _split(module.weight.grad, group.widths),
        _split(module.bias.grad, group.widths),
        strict=True,
    )
    for name, weight, bias, weight_grad, bias_grad in parts:
        assert weight is not None and bias is not None
        task_weight, task_bias = nn.Parameter(weight), nn.Parameter(bias)
        task_weight.grad, task_bias.grad = weight_grad, bias_grad
        yield name, task_weight, task_bias


def unfuse(heads: TaskHeads, fused: nn.ModuleDict, layout: HeadLayout) -> None:
    """Give each fused task's head module its parameters back (new ones, same values)."""
    for key, module in fused.items():
        assert isinstance(module, FusedLinear)
        for name, weight, bias in _rows(layout.groups[int(key)], module):
            head = heads[name]
            head.weight, head.bias = weight, bias


def per_task_state(
    state: dict[str, Any], prefix: str, fused: nn.ModuleDict, layout: HeadLayout
) -> None:
    """A state dict with fused groups (``<prefix>fused.<i>.*``) rewritten in place to the
    per-task keys ``<prefix>heads.<head_key(task)>.weight`` / ``.bias``, heads in task order."""
    heads, fused_prefix = f"{prefix}heads.", f"{prefix}fused."
    per_task: dict[str, dict[str, Any]] = {}  # head key: {part: tensor}
    for key, value in state.items():
        if key.startswith(heads):
            name, _, part = key[len(heads) :].partition(".")  # a head key holds no '.'
            per_task.setdefault(name, {})[part] = value
    for index in fused:
        group = layout.groups[int(index)]
        weights = _split(state[f"{fused_prefix}{index}.weight"], group.widths)
        biases = _split(state[f"{fused_prefix}{index}.bias"], group.widths)
        for name, weight, bias in zip(group.names, weights, biases, strict=True):
            per_task.setdefault(head_key(name), {}).update(weight=weight, bias=bias)
    rest = {k: v for k, v in state.items() if not k.startswith((heads, fused_prefix))}
    state.clear()
    state.update(rest)
    for key in map(head_key, layout.names):
        state.update({f"{heads}{key}.{k}": v for k, v in per_task.get(key, {}).items()})


def fused_state(
    state: dict[str, Any], prefix: str, fused: nn.ModuleDict, layout: HeadLayout
) -> None:
    """The inverse of `per_task_state`, in place, for ``load_state_dict``: a fused group's
    per-task keys joined into its block (left as they are when some are missing, so that
    ``load_state_dict`` names them)."""
    for index in fused:
        group = layout.groups[int(index)]
        for part in ("weight", "bias"):
            keys = [f"{prefix}heads.{head_key(name)}.{part}" for name in group.names]
            if all(key in state for key in keys):
                state[f"{prefix}fused.{index}.{part}"] = torch.cat([state.pop(k) for k in keys])
