"""``taskmask export``: a run's model as ONNX or TorchScript, for serving without taskmask.

The exported graph takes ``input``, float32 ``(N, *input_shape)`` raw features (the model's
standardisation is inside it), and has one named output per task, ``(N, k)``: probabilities
for binary and multilabel tasks (sigmoid), multiclass tasks (softmax over the classes), and
values for regression tasks. Metadata under the key ``taskmask`` (ONNX ``metadata_props``;
TorchScript ``extra_files``) is JSON: per task its kind, output (label or class) names and
decision thresholds, plus the input shape and feature names. ONNX export needs the ``onnx``
extra (``pip install "taskmask[onnx]"``); TorchScript needs nothing more.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from taskmask._io import write_atomically
from taskmask._version import __version__
from taskmask.errors import TaskmaskError
from taskmask.model._model import MultiTaskModel
from taskmask.tasks._task import builtin_kinds

FORMATS = ("onnx", "torchscript")
METADATA_KEY = "taskmask"
ExportFormat = Literal["onnx", "torchscript"]


class Probabilities(nn.Module):
    """``model`` with each head's outputs turned into what `taskmask.predict` reports, as a
    tuple in task order (tracing needs tensors, not a dict)."""

    def __init__(self, model: MultiTaskModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(x)
        result = []
        for task in self.model.tasks:
            scores = task.spec.scores  # the kind's probabilities (or rates); None: as they are
            output = outputs[task.name]
            result.append(output if scores is None else scores(task, output))
        return tuple(result)


def metadata(model: MultiTaskModel) -> dict[str, Any]:
    """What the exported file says about its outputs (see the module docstring)."""
    tasks = []
    for task in model.tasks:
        entry: dict[str, Any] = {"name": task.name, "kind": task.kind}
        entry["outputs"] = list(task.output_names)
        if task.spec.tunes_thresholds:
            entry["thresholds"] = list(task.thresholds())
        tasks.append(entry)
    return {
        "taskmask_version": __version__,
        "input_shape": list(model.input_shape),
        "feature_names": None if model.feature_names is None else list(model.feature_names),
        "tasks": tasks,
    }


def _check(model: MultiTaskModel) -> None:
    custom = [f"{t.name} ({t.kind})" for t in model.tasks if t.kind not in builtin_kinds()]
    if custom:
        raise TaskmaskError(
            f"tasks {custom} are of user-defined kinds, whose outputs taskmask cannot turn "
            f"into probabilities; export supports the built-in kinds {list(builtin_kinds())}"
        )


def _onnx(module: nn.Module, example: torch.Tensor, names: list[str], meta: str, tmp: Path) -> None:
    try:
        import onnx
    except ImportError:
        raise TaskmaskError('ONNX export needs onnx: pip install "taskmask[onnx]"') from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on the shape checks it records
        torch.onnx.export(
            module,
            (example,),
            str(tmp),
            input_names=["input"],
            output_names=names,
            dynamic_axes={"input": {0: "batch"}, **{name: {0: "batch"} for name in names}},
            dynamo=False,  # the tracing exporter: a second, where dynamo takes ten
        )
    proto = onnx.load(str(tmp))
    proto.metadata_props.append(onnx.StringStringEntryProto(key=METADATA_KEY, value=meta))
    onnx.save(proto, str(tmp))


def _torchscript(module: nn.Module, example: torch.Tensor, meta: str, tmp: Path) -> None:
    with warnings.catch_warnings():
        # the tracer's notes on the shape checks it records, and torch >= 2.10 asking for
        # torch.export: TorchScript files still load in C++ (libtorch) and in Python
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, example, check_trace=False)  # type: ignore[no-untyped-call]
        torch.jit.save(traced, str(tmp), _extra_files={METADATA_KEY: meta})


def export_model(model: MultiTaskModel, path: Path, *, format: ExportFormat) -> Path:
    """Write a CPU copy of ``model``, in eval mode, to ``path`` as ``format``, atomically;
    ``model`` itself is left as it was."""
    if format not in FORMATS:
        raise TaskmaskError(f"unknown export format {format!r}; choose one of {list(FORMATS)}")
    _check(model)
    model = copy.deepcopy(model).cpu().eval()
    module = Probabilities(model).eval()
    example = torch.zeros((2, *model.input_shape))
    meta = json.dumps(metadata(model))
    names = list(model.task_names)
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "onnx":
        write_atomically(path, lambda tmp: _onnx(module, example, names, meta, tmp))
    else:
        write_atomically(path, lambda tmp: _torchscript(module, example, meta, tmp))
    return path
