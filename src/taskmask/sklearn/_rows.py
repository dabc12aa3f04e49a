"""``X`` densified a batch of rows at a time: the `Rows` wrapper that training and prediction
slice like a tensor, and `taskmask.fit`'s steps for a sparse (CSR) ``X``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils.sparsefuncs import mean_variance_axis

from taskmask.api import FitResult, balance_tasks, resolve_tasks, train_prepared
from taskmask.data._memory import MultiTaskData, split
from taskmask.model._trunks import MLPConfig
from taskmask.tasks._masking import encode_labels
from taskmask.tasks._task import Task
from taskmask.training._trainer import TrainConfig

_DENSE_CHUNK = 2**23  # features x rows densified at once when predicting from sparse input


class Rows:
    """A matrix (dense or CSR) that `MultiTaskData` and `raw_outputs` slice like a tensor:
    ``rows[index]`` densifies only the rows asked for, as a tensor of NumPy ``dtype`` on
    ``device``."""

    def __init__(
        self, matrix: Any, dtype: type = np.float32, device: torch.device | str = "cpu"
    ) -> None:
        self.matrix, self.dtype, self.device = matrix, dtype, torch.device(device)

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def shape(self) -> torch.Size:
        return torch.Size(self.matrix.shape)

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> Rows:
        return Rows(self.matrix, self.dtype, device)

    def __getitem__(self, index: slice | torch.Tensor) -> torch.Tensor:
        rows = self.matrix[index.cpu().numpy() if isinstance(index, torch.Tensor) else index]
        dense: np.ndarray = np.array(rows.toarray() if sp.issparse(rows) else rows, self.dtype)
        return torch.from_numpy(dense).to(self.device)


def prediction_batch_size(n_features: int) -> int:
    """Rows per prediction batch: at most 4096, and at most ``_DENSE_CHUNK`` values densified."""
    return max(1, min(4096, _DENSE_CHUNK // n_features))


def _sparse_standardization(matrix: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor]:
    """`taskmask.api.standardization` for a sparse matrix, without densifying it."""
    mean, var = mean_variance_axis(matrix.astype(np.float64), axis=0)
    std = np.sqrt(var)
    return torch.from_numpy(mean).float(), torch.from_numpy(np.where(std > 0, std, 1.0)).float()


def fit_sparse(
    matrix: sp.csr_matrix,
    labels: Mapping[str, Any],
    tasks: Sequence[Task],
    *,
    trunk: MLPConfig,
    standardize: bool,
    feature_names: Sequence[str] | None,
    config: TrainConfig,
) -> FitResult:
    """`taskmask.fit`'s steps for a CSR matrix, whose rows are densified one batch at a time."""
    tasks = resolve_tasks(tasks, labels)
    encoded = {t.name: encode_labels(t, labels[t.name], source="training data") for t in tasks}
    rows = MultiTaskData(torch.arange(matrix.shape[0]), encoded)  # row numbers stand for rows
    held = None
    if config.validation_split > 0:
        generator = torch.Generator().manual_seed(config.seed)
        rows, held = split(rows, config.validation_split, generator=generator)

    def densified(part: MultiTaskData) -> MultiTaskData:
        return MultiTaskData(cast(torch.Tensor, Rows(matrix[part.inputs.numpy()])), part.labels)

    train, val = densified(rows), (densified(held) if held is not None else None)
    tasks = balance_tasks(tasks, train)
    kept = cast(Rows, train.inputs).matrix
    scaling = _sparse_standardization(kept) if standardize else (None, None)
    return train_prepared(train, val, tasks, scaling, feature_names, trunk=trunk, config=config)
