"""Molecular graphs from SMILES (extra ``chem``), batched without a Python step per molecule.

`molecular_graphs` turns SMILES into a `MolecularGraphs` store: every molecule's atoms and bonds
in one node table and one edge table, with offsets. Indexing it with row numbers
(``graphs[rows]``) gives the store of those molecules, built with vectorised gathers (no
per-molecule collation). It has the fields PyTorch Geometric's ``Batch`` has (``x``,
``edge_index``, ``edge_attr``, ``batch``, ``num_graphs``), so PyG layers read it as it is.

Features are the categorical atom and bond features of the Open Graph Benchmark (Hu et al.
2020, https://arxiv.org/abs/2005.00687; ``ogb.utils.features``), as integer indices, one column
per feature, the last index of each vocabulary meaning "other":

- atoms (`ATOM_FEATURES`): atomic number, chirality tag, degree, formal charge, number of
  hydrogens, radical electrons, hybridisation, aromatic, in a ring;
- bonds (`BOND_FEATURES`): bond type, stereo, conjugated. Each bond is two directed edges.

A SMILES that RDKit cannot parse is left out and reported as in `taskmask.data.chem.featurize`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from taskmask.data.chem import SmilesFailure, _quiet_rdkit, parse_smiles
from taskmask.errors import TaskmaskError

_CHIRALITY = ("CHI_UNSPECIFIED", "CHI_TETRAHEDRAL_CW", "CHI_TETRAHEDRAL_CCW", "CHI_OTHER")
_HYBRIDISATION = ("SP", "SP2", "SP3", "SP3D", "SP3D2")
_BOND_TYPES = ("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC")
_STEREO = ("STEREONONE", "STEREOZ", "STEREOE", "STEREOCIS", "STEREOTRANS", "STEREOANY")

ATOM_FEATURES: tuple[tuple[str, int], ...] = (
    ("atomic_num", 119 + 1),
    ("chirality", len(_CHIRALITY) + 1),
    ("degree", 11 + 1),
    ("formal_charge", 11 + 1),
    ("num_hs", 9 + 1),
    ("radical_electrons", 5 + 1),
    ("hybridisation", len(_HYBRIDISATION) + 1),
    ("aromatic", 2),
    ("in_ring", 2),
)
"""``(name, vocabulary size)`` of each atom feature column (the last index means "other")."""

BOND_FEATURES: tuple[tuple[str, int], ...] = (
    ("bond_type", len(_BOND_TYPES) + 1),
    ("stereo", len(_STEREO) + 1),
    ("conjugated", 2),
)
"""``(name, vocabulary size)`` of each bond feature column."""


def _index(value: Any, choices: Sequence[Any], size: int) -> int:
    """Position of ``value`` in ``choices``, or ``size - 1`` ("other")."""
    try:
        return min(list(choices).index(value), size - 1)
    except ValueError:
        return size - 1


def _atom_row(atom: Any) -> list[int]:
    sizes = [size for _, size in ATOM_FEATURES]
    return [
        min(atom.GetAtomicNum() - 1, sizes[0] - 1) if atom.GetAtomicNum() > 0 else sizes[0] - 1,
        _index(str(atom.GetChiralTag()), _CHIRALITY, sizes[1]),
        min(atom.GetTotalDegree(), sizes[2] - 1),
        _index(atom.GetFormalCharge(), range(-5, 6), sizes[3]),
        min(atom.GetTotalNumHs(), sizes[4] - 1),
        min(atom.GetNumRadicalElectrons(), sizes[5] - 1),
        _index(str(atom.GetHybridization()), _HYBRIDISATION, sizes[6]),
        int(atom.GetIsAromatic()),
        int(atom.IsInRing()),
    ]


def _bond_row(bond: Any) -> list[int]:
    sizes = [size for _, size in BOND_FEATURES]
    return [
        _index(str(bond.GetBondType()), _BOND_TYPES, sizes[0]),
        _index(str(bond.GetStereo()), _STEREO, sizes[1]),
        int(bond.GetIsConjugated()),
    ]


def _ranges(starts: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``cat([arange(s, s + c) for s, c in zip(starts, counts)])``, vectorised."""
    offsets = torch.cumsum(counts, 0) - counts  # where each range starts in the output
    within = torch.arange(int(counts.sum()), device=counts.device)
    return torch.repeat_interleave(starts - offsets, counts) + within


@dataclass(frozen=True)
class MolecularGraphs:
    """Graphs of ``len(self)`` molecules in one node table ``x`` ``(V, F_atom)`` and one edge
    table (``local_edges`` ``(2, E)``, node numbers within each molecule; ``edge_attr``
    ``(E, F_bond)``), molecule ``i`` owning nodes ``node_ptr[i]:node_ptr[i+1]`` and edges
    ``edge_ptr[i]:edge_ptr[i+1]``. All int64.

    It slices like a tensor of rows: ``graphs[rows]`` (an index tensor, an array or a slice) is
    the graphs of those molecules in that order, built by vectorised gathers. It is also a batch
    as PyTorch Geometric sees one: ``edge_index`` (into this object's nodes), ``batch`` (the
    molecule of each node) and ``num_graphs``, so a graph trunk reads it as it is.
    """

    x: torch.Tensor
    local_edges: torch.Tensor
    edge_attr: torch.Tensor
    node_ptr: torch.Tensor
    edge_ptr: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.node_ptr) != len(self.edge_ptr) or len(self.node_ptr) < 1:
            raise TaskmaskError("node_ptr and edge_ptr must both have one entry per graph, + 1")
        if int(self.node_ptr[-1]) != len(self.x) or int(self.edge_ptr[-1]) != len(self.edge_attr):
            raise TaskmaskError("the offsets do not match the node and edge tables")

    def __len__(self) -> int:
        return len(self.node_ptr) - 1

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    @property
    def num_graphs(self) -> int:
        return len(self)

    def _counts(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.node_ptr[1:] - self.node_ptr[:-1], self.edge_ptr[1:] - self.edge_ptr[:-1]

    @property
    def batch(self) -> torch.Tensor:
        """``(V,)``: the molecule of each node."""
        nodes, _ = self._counts()
        return torch.repeat_interleave(torch.arange(len(self), device=nodes.device), nodes)

    @property
    def edge_index(self) -> torch.Tensor:
        """``(2, E)``: the edges as node numbers into ``x``."""
        _, edges = self._counts()
        return self.local_edges + torch.repeat_interleave(self.node_ptr[:-1], edges)

    def __getitem__(self, rows: torch.Tensor | np.ndarray | slice) -> MolecularGraphs:
        if isinstance(rows, slice):
            rows = torch.arange(len(self))[rows]
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.node_ptr.device)
        if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= len(self)):
            raise TaskmaskError(f"graph rows must be in 0..{len(self) - 1}, got {rows.tolist()}")
        nodes, edges = self._counts()
        node_count, edge_count = nodes[rows], edges[rows]
        node_rows = _ranges(self.node_ptr[rows], node_count)
        edge_rows = _ranges(self.edge_ptr[rows], edge_count)
        zero = torch.zeros(1, dtype=torch.long, device=rows.device)
        return MolecularGraphs(
            x=self.x[node_rows],
            local_edges=self.local_edges[:, edge_rows],
            edge_attr=self.edge_attr[edge_rows],
            node_ptr=torch.cat([zero, torch.cumsum(node_count, 0)]),
            edge_ptr=torch.cat([zero, torch.cumsum(edge_count, 0)]),
        )

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> MolecularGraphs:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=non_blocking)

        return MolecularGraphs(
            move(self.x),
            move(self.local_edges),
            move(self.edge_attr),
            move(self.node_ptr),
            move(self.edge_ptr),
        )


def molecular_graphs(
    smiles: Sequence[Any],
) -> tuple[MolecularGraphs, np.ndarray, list[SmilesFailure]]:
    """Graphs of the SMILES that parse, the row numbers kept, and the failures (see the module
    docstring). A molecule without bonds (one ion) has no edge; one without atoms is a failure."""
    mols, failures = parse_smiles(smiles)
    atoms: list[list[int]] = []
    bonds: list[list[int]] = []
    ends: list[tuple[int, int]] = []
    node_ptr, edge_ptr, kept = [0], [0], []
    with _quiet_rdkit():
        for row, mol in enumerate(mols):
            if mol is None:
                continue
            if mol.GetNumAtoms() == 0:
                failures.append(SmilesFailure(row, str(smiles[row]), "no atoms"))
                continue
            atoms.extend(_atom_row(atom) for atom in mol.GetAtoms())
            for bond in mol.GetBonds():
                i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
                feature = _bond_row(bond)
                ends.extend([(i, j), (j, i)])
                bonds.extend([feature, feature])
            node_ptr.append(len(atoms))
            edge_ptr.append(len(ends))
            kept.append(row)
    failures.sort(key=lambda failure: failure.row)
    store = MolecularGraphs(
        x=torch.tensor(atoms, dtype=torch.long).reshape(-1, len(ATOM_FEATURES)),
        local_edges=torch.tensor(ends, dtype=torch.long).reshape(-1, 2).T.contiguous(),
        edge_attr=torch.tensor(bonds, dtype=torch.long).reshape(-1, len(BOND_FEATURES)),
        node_ptr=torch.tensor(node_ptr, dtype=torch.long),
        edge_ptr=torch.tensor(edge_ptr, dtype=torch.long),
    )
    return store, np.asarray(kept, dtype=np.int64), failures
