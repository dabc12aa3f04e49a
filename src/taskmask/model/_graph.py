"""A graph isomorphism network trunk for molecules, on PyTorch Geometric (extra ``graph``).

`GINTrunk` is the GIN of the Open Graph Benchmark's molecule baselines (Xu et al. 2019,
https://arxiv.org/abs/1810.00826; with edge features as in Hu et al. 2020,
https://arxiv.org/abs/1905.12265, "GINE"): categorical atom and bond features are embedded
(one table per feature, summed), then ``layers`` rounds of PyG's ``GINEConv`` (message
``relu(h_j + bond embedding)``, update ``MLP((1 + eps) h_i + sum of messages)``), batch norm,
ReLU (not after the last round) and dropout. ``virtual_node`` adds a node linked to every atom
(Gilmer et al. 2017; OGB's ``gin-virtual``); ``jumping_knowledge`` combines the rounds' node
states (``last``, ``sum`` or ``concat``, Xu et al. 2018); ``pooling`` (``mean``, ``sum``,
``max``) reads one vector per molecule. ``forward(graphs)`` takes any batch with PyG's fields
(``x``, ``edge_index``, ``edge_attr``, ``batch``, ``num_graphs``; `taskmask.data.graphs`) and
returns ``(num_graphs, width)``. PyTorch Geometric is imported when a trunk is built.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Sequence
from typing import Any, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from taskmask.errors import TaskmaskError

ATOM_VOCABULARY = (120, 5, 12, 12, 10, 6, 6, 2, 2)
"""Vocabulary sizes of the atom feature columns of `taskmask.data.graphs` (OGB's)."""
BOND_VOCABULARY = (5, 7, 2)
"""Vocabulary sizes of its bond feature columns."""


class GraphInput(Protocol):
    """What a graph trunk reads (PyG's ``Batch`` and `taskmask.data.graphs.GraphBatch` both)."""

    x: torch.Tensor
    edge_index: torch.Tensor
    edge_attr: torch.Tensor
    batch: torch.Tensor
    num_graphs: int


class GINConfig(BaseModel):
    """A `GINTrunk`: ``hidden`` units per node, ``layers`` message-passing rounds, ``dropout``
    after each, ``virtual_node``, ``jumping_knowledge`` and ``pooling`` as in the module
    docstring. Defaults are OGB's molecule GIN (5 layers of 300, dropout 0.5, mean pooling)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["gin"] = "gin"
    hidden: int = Field(default=300, ge=1)
    layers: int = Field(default=5, ge=1)
    dropout: float = Field(default=0.5, ge=0.0, lt=1.0)
    virtual_node: bool = False
    jumping_knowledge: Literal["last", "sum", "concat"] = "last"
    pooling: Literal["mean", "sum", "max"] = "mean"


def _pyg(module: str) -> Any:
    """Import a PyTorch Geometric module (its import warns about torch.jit: silenced here)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return importlib.import_module(module)
    except ImportError as error:
        raise TaskmaskError(
            f"the graph trunk needs PyTorch Geometric ({error}); install the extra: "
            "pip install 'taskmask[graph]'"
        ) from None


class _Embedding(nn.Module):
    """Sum of one embedding per categorical column: ``(n, columns)`` int64 -> ``(n, width)``."""

    def __init__(self, vocabulary: Sequence[int], width: int) -> None:
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(size, width) for size in vocabulary)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.ndim != 2 or codes.shape[1] != len(self.tables):
            raise TaskmaskError(
                f"expected {len(self.tables)} categorical feature columns, got {tuple(codes.shape)}"
            )
        out = self.tables[0](codes[:, 0])
        for j in range(1, len(self.tables)):  # one step per feature column, not per atom
            out = out + self.tables[j](codes[:, j])
        return out


def _mlp(width: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(width, 2 * width), nn.BatchNorm1d(2 * width), nn.ReLU(), nn.Linear(2 * width, out)
    )


class GINTrunk(nn.Module):
    """The GIN trunk of the module docstring; ``output_width`` is its output's width."""

    def __init__(self, config: GINConfig) -> None:
        super().__init__()
        conv = _pyg("torch_geometric.nn").GINEConv
        pool = _pyg("torch_geometric.nn")
        self.config = config
        h, n = config.hidden, config.layers
        self.atoms = _Embedding(ATOM_VOCABULARY, h)
        self.bonds = nn.ModuleList(_Embedding(BOND_VOCABULARY, h) for _ in range(n))
        self.convs = nn.ModuleList(conv(_mlp(h, h), train_eps=True) for _ in range(n))
        self.norms = nn.ModuleList(nn.BatchNorm1d(h) for _ in range(n))
        self.pool = {
            "mean": pool.global_mean_pool,
            "sum": pool.global_add_pool,
            "max": pool.global_max_pool,
        }[config.pooling]
        self._add = pool.global_add_pool
        if config.virtual_node:
            self.virtual = nn.Embedding(1, h)
            nn.init.zeros_(self.virtual.weight)
            self.virtual_mlps = nn.ModuleList(
                nn.Sequential(
                    nn.Linear(h, 2 * h),
                    nn.BatchNorm1d(2 * h),
                    nn.ReLU(),
                    nn.Linear(2 * h, h),
                    nn.BatchNorm1d(h),
                    nn.ReLU(),
                )
                for _ in range(n - 1)
            )
        self.dropout = nn.Dropout(config.dropout)
        self.output_width = h * (n + 1) if config.jumping_knowledge == "concat" else h

    def forward(self, graphs: GraphInput) -> torch.Tensor:
        config = self.config
        batch = graphs.batch
        node = self.atoms(graphs.x)
        states = [node]
        virtual = None
        if config.virtual_node:
            index = torch.zeros(graphs.num_graphs, dtype=torch.long, device=node.device)
            virtual = self.virtual(index)  # (num_graphs, h)
        for layer in range(config.layers):
            if virtual is not None:
                node = node + virtual[batch]
            entering = node
            edges = self.bonds[layer](graphs.edge_attr)
            node = self.norms[layer](self.convs[layer](node, graphs.edge_index, edges))
            if layer < config.layers - 1:
                node = torch.relu(node)
            node = self.dropout(node)
            if virtual is not None and layer < config.layers - 1:
                pooled = self._add(entering, batch, size=graphs.num_graphs) + virtual
                virtual = self.dropout(self.virtual_mlps[layer](pooled))
            states.append(node)
        if config.jumping_knowledge == "concat":
            node = torch.cat(states, dim=1)
        elif config.jumping_knowledge == "sum":
            node = torch.stack(states).sum(0)
        return self.pool(node, batch, size=graphs.num_graphs)
