"""Sparse (CSR) features as a data source: `SparseRows` stands where an ``(N, F)`` tensor of
inputs stands, and densifies only the rows a batch asks for."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from taskmask.data._stream_stats import Moments, moments
from taskmask.errors import TaskmaskError

_DENSE_CHUNK = 2**23  # features x rows densified at once


class SparseRows:
    """A CSR matrix that `MultiTaskData`, `split` and `raw_outputs` slice like a tensor:
    ``rows[index]`` densifies only the rows asked for, as a tensor of NumPy ``dtype`` on
    ``device``; ``rows.subset(index)`` keeps them sparse."""

    def __init__(
        self, matrix: Any, dtype: type = np.float32, device: torch.device | str = "cpu"
    ) -> None:
        self.matrix, self.dtype, self.device = matrix, dtype, torch.device(device)

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def shape(self) -> torch.Size:
        return torch.Size(self.matrix.shape)

    @property
    def ndim(self) -> int:
        return 2

    def numel(self) -> int:
        """Stored entries (what moving it would copy)."""
        return int(self.matrix.nnz) if sp.issparse(self.matrix) else int(self.matrix.size)

    def element_size(self) -> int:
        return int(np.dtype(self.dtype).itemsize)

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> SparseRows:
        return SparseRows(self.matrix, self.dtype, device)

    def subset(self, index: torch.Tensor | slice) -> SparseRows:
        """The rows at ``index``, still sparse."""
        rows = index.cpu().numpy() if isinstance(index, torch.Tensor) else index
        return SparseRows(self.matrix[rows], self.dtype, self.device)

    def __getitem__(self, index: slice | torch.Tensor) -> torch.Tensor:
        rows = self.matrix[index.cpu().numpy() if isinstance(index, torch.Tensor) else index]
        dense: np.ndarray = np.array(rows.toarray() if sp.issparse(rows) else rows, self.dtype)
        return torch.from_numpy(dense).to(self.device)

    def moments(self) -> Moments:
        """The features' `Moments`, densifying at most ``_DENSE_CHUNK`` values at a time."""
        step = chunk_rows(self.matrix.shape[1])
        total = Moments(0, np.zeros(self.matrix.shape[1]), np.zeros(self.matrix.shape[1]))
        for start in range(0, len(self), step):
            total = total + moments(self[start : start + step].numpy())
        return total


def chunk_rows(n_features: int) -> int:
    """Rows per densified chunk: at most 4096, and at most ``_DENSE_CHUNK`` values."""
    return max(1, min(4096, _DENSE_CHUNK // max(n_features, 1)))


def sparse_inputs(matrix: Any, *, source: str) -> SparseRows:
    """A scipy sparse matrix as float32 `SparseRows`; NaN or inf is an error naming the entry."""
    csr = sp.csr_matrix(matrix, dtype=np.float32)
    if csr.shape[0] == 0:
        raise TaskmaskError(f"{source}: no rows")
    bad = ~np.isfinite(csr.data)
    if bad.any():
        coo = csr.tocoo()
        row, col = int(coo.row[bad.argmax()]), int(coo.col[bad.argmax()])
        raise TaskmaskError(
            f"{source}: feature index {col} is NaN or infinite at row {row}; "
            "features must be finite"
        )
    return SparseRows(csr)
