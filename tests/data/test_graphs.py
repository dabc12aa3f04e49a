"""Molecular graphs: OGB-style features, vectorised batching equal to PyG's collation, GIN trunk."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit")

from taskmask.data.graphs import (
    ATOM_FEATURES,
    BOND_FEATURES,
    MolecularGraphs,
    molecular_graphs,
)
from taskmask.errors import TaskmaskError

SMILES = ["CCO", "not a molecule", "c1ccccc1O", "[Na+].[Cl-]", "C[C@H](N)C(=O)O", "C"]


def test_features_and_failures() -> None:
    graphs, kept, failures = molecular_graphs(SMILES)
    assert kept.tolist() == [0, 2, 3, 4, 5]
    assert [f.row for f in failures] == [1]
    assert len(graphs) == 5
    assert graphs.node_ptr.tolist() == [0, 3, 10, 12, 18, 19]  # heavy atoms only
    # ethanol: 2 bonds, each as two directed edges; the salt and methane have none
    assert (graphs.edge_ptr[1:] - graphs.edge_ptr[:-1]).tolist() == [4, 14, 0, 10, 0]
    x = graphs.x
    assert x.shape[1] == len(ATOM_FEATURES) and graphs.edge_attr.shape[1] == len(BOND_FEATURES)
    for column, (_, size) in enumerate(ATOM_FEATURES):
        assert int(x[:, column].min()) >= 0 and int(x[:, column].max()) < size
    assert x[0, 0].item() == 5  # carbon: atomic number 6 -> index 5
    phenol = x[3:10]
    assert phenol[:6, 7].tolist() == [1] * 6 and phenol[6, 7].item() == 0  # aromatic ring, O
    alanine = x[12:18]
    assert alanine[1, 1].item() in (1, 2)  # the chiral carbon is tagged
    assert x[10, 3].item() == 6 and x[11, 3].item() == 4  # Na+ and Cl-: charges +1 and -1


def test_a_batch_equals_pyg_collation() -> None:
    data_module = pytest.importorskip("torch_geometric.data")
    graphs, _, _ = molecular_graphs(SMILES)
    rows = torch.tensor([4, 0, 2, 2, 3])
    batch = graphs[rows]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        items = []
        for r in rows.tolist():
            nodes = slice(int(graphs.node_ptr[r]), int(graphs.node_ptr[r + 1]))
            edges = slice(int(graphs.edge_ptr[r]), int(graphs.edge_ptr[r + 1]))
            items.append(
                data_module.Data(
                    x=graphs.x[nodes],
                    edge_index=graphs.local_edges[:, edges],
                    edge_attr=graphs.edge_attr[edges],
                )
            )
        reference = data_module.Batch.from_data_list(items)
    assert batch.num_graphs == reference.num_graphs == 5
    for name in ("x", "edge_index", "edge_attr", "batch"):
        assert torch.equal(getattr(batch, name), getattr(reference, name)), name


def test_slices_empty_batches_and_bad_rows() -> None:
    graphs, _, _ = molecular_graphs(SMILES)
    assert torch.equal(graphs[1:3].x, graphs[torch.tensor([1, 2])].x)
    twice = graphs[torch.tensor([4, 1, 2])][torch.tensor([2, 0])]  # closed under indexing
    once = graphs[torch.tensor([2, 4])]
    for name in ("x", "edge_index", "edge_attr", "batch", "node_ptr"):
        assert torch.equal(getattr(twice, name), getattr(once, name)), name
    empty = graphs[torch.tensor([], dtype=torch.long)]
    assert empty.num_graphs == 0 and empty.x.shape == (0, len(ATOM_FEATURES))
    with pytest.raises(TaskmaskError, match=r"0\.\.4"):
        graphs[np.array([5])]
    with pytest.raises(TaskmaskError, match="offsets"):
        MolecularGraphs(
            graphs.x,
            graphs.edge_index,
            graphs.edge_attr,
            graphs.node_ptr[:-1],
            graphs.edge_ptr[:-1],
        )


@pytest.mark.parametrize("virtual_node", [False, True])
@pytest.mark.parametrize("jumping_knowledge", ["last", "sum", "concat"])
def test_gin_trunk_reads_one_vector_per_molecule(virtual_node: bool, jumping_knowledge: str):
    pytest.importorskip("torch_geometric")
    from taskmask.model._graph import ATOM_VOCABULARY, BOND_VOCABULARY, GINConfig, GINTrunk

    assert tuple(size for _, size in ATOM_FEATURES) == ATOM_VOCABULARY
    assert tuple(size for _, size in BOND_FEATURES) == BOND_VOCABULARY
    torch.manual_seed(0)
    config = GINConfig(
        hidden=16, layers=3, virtual_node=virtual_node, jumping_knowledge=jumping_knowledge
    )
    trunk = GINTrunk(config)
    graphs, _, _ = molecular_graphs(SMILES)
    out = trunk(graphs[torch.arange(5)])
    assert out.shape == (5, trunk.output_width)
    assert trunk.output_width == (16 * 4 if jumping_knowledge == "concat" else 16)
    trunk.eval()
    with torch.no_grad():  # a molecule's vector does not depend on the others in the batch
        alone = trunk(graphs[torch.tensor([2])])
        together = trunk(graphs[torch.tensor([0, 2, 4])])
    torch.testing.assert_close(alone[0], together[1], atol=1e-5, rtol=1e-5)
    out.sum().backward()
    assert trunk.atoms.tables[0].weight.grad is not None
