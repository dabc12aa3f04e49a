"""In-memory multi-task data, batched by slicing tensors (no per-sample Python, no DataLoader)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from taskmask.data._rows import SparseRows, sparse_inputs
from taskmask.errors import TaskmaskError
from taskmask.functional._labels import EncodedLabels
from taskmask.tasks._masking import encode_labels
from taskmask.tasks._task import Task


@dataclass(frozen=True)
class MultiTaskData:
    """``inputs`` ``(N, *input_shape)`` float32 and, per task name, its ``EncodedLabels``.

    ``inputs`` may be `SparseRows` (sparse features, typed as the tensor it stands for):
    indexing it densifies only the rows asked for.

    A task may be absent from ``labels`` (e.g. prediction data): it then has no observed label.
    """

    inputs: torch.Tensor
    labels: Mapping[str, EncodedLabels]

    def __post_init__(self) -> None:
        n = len(self.inputs)
        for name, encoded in self.labels.items():
            if len(encoded.target) != n or len(encoded.observed) != n:
                raise TaskmaskError(
                    f"task {name!r}: {len(encoded.target)} label rows for {n} input rows; "
                    "inputs and labels must have the same number of rows"
                )

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.inputs.shape[1:])

    def take(self, index: torch.Tensor | slice) -> MultiTaskData:
        """The rows at ``index`` (a slice gives views, an index tensor copies)."""
        return MultiTaskData(
            self.inputs[index],
            {
                name: EncodedLabels(enc.target[index], enc.observed[index])
                for name, enc in self.labels.items()
            },
        )

    def subset(self, index: torch.Tensor) -> MultiTaskData:
        """The rows at ``index``; sparse inputs stay sparse (`take` densifies them)."""
        inputs = self.inputs
        if isinstance(inputs, SparseRows):
            inputs = cast(torch.Tensor, inputs.subset(index))
            labels = {
                n: EncodedLabels(e.target[index], e.observed[index]) for n, e in self.labels.items()
            }
            return MultiTaskData(inputs, labels)
        return self.take(index)

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> MultiTaskData:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=non_blocking)

        return MultiTaskData(
            move(self.inputs),
            {n: EncodedLabels(move(e.target), move(e.observed)) for n, e in self.labels.items()},
        )

    def batches(
        self, batch_size: int, *, generator: torch.Generator | None = None
    ) -> Iterator[MultiTaskData]:
        """Consecutive batches; shuffled with ``generator`` when one is given."""
        if batch_size < 1:
            raise TaskmaskError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        if generator is None:
            for start in range(0, n, batch_size):
                yield self.take(slice(start, start + batch_size))
            return
        order = torch.randperm(n, generator=generator).to(self.inputs.device)
        for start in range(0, n, batch_size):
            yield self.take(order[start : start + batch_size])

    def n_observed(self) -> dict[str, int]:
        """Observed label entries per task."""
        return {name: int(enc.observed.sum()) for name, enc in self.labels.items()}


def as_inputs(
    inputs: Any, *, source: str = "inputs", names: Sequence[str] | None = None
) -> torch.Tensor:
    """Features as a float32 tensor ``(N, ...)``; NaN, inf or text is an error naming the column.
    A scipy sparse matrix becomes `SparseRows` (typed as the tensor it stands for).

    ``names`` are the feature names: a DataFrame's columns are taken by these names, in this
    order (a missing one is an error); for arrays they only label error messages.
    """
    if sp.issparse(inputs):
        return cast(torch.Tensor, sparse_inputs(inputs, source=source))
    if isinstance(inputs, SparseRows):
        return cast(torch.Tensor, inputs)
    if isinstance(inputs, pd.DataFrame):
        if names is not None:
            absent = [n for n in names if n not in inputs.columns]
            if absent:
                raise TaskmaskError(
                    f"{source}: feature columns {absent[:5]} are missing "
                    f"({len(absent)} in all); expected the model's features {list(names)[:5]}..."
                )
            inputs = inputs[list(names)]
        names = [str(c) for c in inputs.columns]
        text = [
            c for c, dtype in zip(names, inputs.dtypes, strict=True) if dtype.kind not in "biuf"
        ]
        if text:
            raise TaskmaskError(f"{source}: feature column {text[0]!r} is not numeric")
        inputs = inputs.to_numpy(np.float32)
    if isinstance(inputs, torch.Tensor):
        tensor = inputs.detach().to(torch.float32)
    else:
        array = np.asarray(inputs)
        if array.dtype.kind not in "biuf":
            raise TaskmaskError(f"{source}: features must be numeric, got dtype {array.dtype}")
        array = np.ascontiguousarray(array, dtype=np.float32)
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
    if tensor.ndim < 2:
        raise TaskmaskError(
            f"{source}: features must be (N, n_features), got {tuple(tensor.shape)}"
        )
    if len(tensor) == 0:
        raise TaskmaskError(f"{source}: no rows")
    finite = torch.isfinite(tensor.reshape(len(tensor), -1))
    if not bool(finite.all()):
        row, col = (int(i) for i in torch.nonzero(~finite)[0])
        column = names[col] if names is not None and tensor.ndim == 2 else f"index {col}"
        raise TaskmaskError(
            f"{source}: feature {column} is NaN or infinite at row {row}; features must be finite"
        )
    return tensor


def make_data(
    inputs: Any,
    labels: Mapping[str, Any],
    tasks: Sequence[Task],
    *,
    source: str = "data",
    feature_names: Sequence[str] | None = None,
) -> MultiTaskData:
    """Encode raw inputs and per-task raw labels (see `taskmask.tasks`) into `MultiTaskData`.

    ``labels`` maps task names to raw labels; a task missing from it is left out.
    """
    known = {task.name for task in tasks}
    unknown = sorted(set(labels) - known)
    if unknown:
        raise TaskmaskError(f"{source}: labels for unknown tasks {unknown}; tasks: {sorted(known)}")
    tensor = as_inputs(inputs, source=source, names=feature_names)
    encoded = {
        task.name: encode_labels(task, labels[task.name], source=source)
        for task in tasks
        if task.name in labels
    }
    return MultiTaskData(tensor, encoded)


def split(
    data: MultiTaskData, fraction: float, *, generator: torch.Generator
) -> tuple[MultiTaskData, MultiTaskData]:
    """Random ``(1 - fraction, fraction)`` split of the rows."""
    if not 0.0 < fraction < 1.0:
        raise TaskmaskError(f"validation fraction must be in (0, 1), got {fraction}")
    order = torch.randperm(len(data), generator=generator)
    n_held = max(1, round(len(data) * fraction))
    return data.subset(order[n_held:]), data.subset(order[:n_held])
