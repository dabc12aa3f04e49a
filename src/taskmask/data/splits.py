"""Seeded train / validation / test splits of rows: random (optionally stratified) and
Bemis-Murcko scaffold splits for molecules.

Every split returns a `Split` of three disjoint, sorted int64 index arrays covering
``0..n-1``. Sizes: ``n_validation = round(f1 * n)``, ``n_test = round(f2 * n)``, train gets
the rest (a scaffold split can only approximate them, since a scaffold's molecules stay
together).

Scaffold splits (Bemis & Murcko, J. Med. Chem. 39, 2887 (1996), doi:10.1021/jm9602928) group
molecules by their ring systems with linkers, side chains removed; acyclic molecules share the
empty scaffold. Two ways to place the groups:

- ``largest_first`` (the default): deterministic, as in MoleculeNet / DeepChem and in OGB's
  ``ogbg-mol*`` splits (via Hu et al. 2020): groups sorted by size, largest first (ties by
  their last row, descending); a group goes to train while train stays within ``f0 * n``
  rows, else to validation while train + validation stay within ``(f0 + f1) * n``, else to
  test. The seed is not used; test holds the rarest scaffolds. OGB's figures use this split.
- ``balanced``: as chemprop's ``scaffold_balanced``: groups larger than half the test size go
  to train first, the others are shuffled with ``seed``; each group then goes to train,
  validation or test in that order of preference, where it still fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
from sklearn.model_selection import train_test_split

from taskmask.errors import TaskmaskError

ScaffoldMethod = Literal["largest_first", "balanced"]


class Split(NamedTuple):
    """Row indices (sorted int64) of each part."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or min(values) < 0 or abs(sum(values) - 1.0) > 1e-6:
        raise TaskmaskError(
            f"fractions must be 3 non-negative numbers (train, validation, test) summing to 1, "
            f"got {list(fractions)}"
        )
    return values


def _sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    _, f_val, f_test = _check_fractions(fractions)
    n_val, n_test = round(f_val * n), round(f_test * n)
    return n - n_val - n_test, n_val, n_test


def _as_split(train: Any, validation: Any, test: Any) -> Split:
    return Split(*(np.sort(np.asarray(p, dtype=np.int64)) for p in (train, validation, test)))


def random_split(
    n: int,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    *,
    seed: int = 0,
    stratify: Sequence[Any] | np.ndarray | None = None,
) -> Split:
    """A seeded random split of ``n`` rows; with ``stratify`` (one class label per row, e.g. a
    single binary task), each part keeps the classes' proportions (scikit-learn's
    ``train_test_split``). For several tasks with missing labels there is no one label to
    stratify on: leave it ``None``.

    >>> parts = random_split(10, (0.6, 0.2, 0.2), seed=0)
    >>> [len(p) for p in parts], sorted(np.concatenate(parts).tolist()) == list(range(10))
    ([6, 2, 2], True)
    """
    if n < 1:
        raise TaskmaskError(f"n must be >= 1, got {n}")
    n_train, n_val, n_test = _sizes(n, fractions)
    labels = None if stratify is None else np.asarray(stratify)
    if labels is not None and labels.shape != (n,):
        raise TaskmaskError(f"stratify must have shape ({n},), got {labels.shape}")
    rows = np.arange(n)
    rng = np.random.RandomState(seed)

    def cut(index: np.ndarray, size: int, by: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if size == 0:
            return index, index[:0]
        if size == len(index):
            return index[:0], index
        try:
            rest, part = train_test_split(index, test_size=size, random_state=rng, stratify=by)
        except ValueError as error:
            raise TaskmaskError(f"cannot stratify this split: {error}") from None
        return rest, part

    rest, test = cut(rows, n_test, labels)
    train, validation = cut(rest, n_val, None if labels is None else labels[rest])
    assert len(train) == n_train
    return _as_split(train, validation, test)


def scaffolds(
    smiles: Sequence[str], *, generic: bool = False, include_chirality: bool = False
) -> list[str]:
    """The Bemis-Murcko scaffold SMILES of each molecule (``""`` for an acyclic one).

    ``generic=True`` also turns every atom into carbon and every bond into a single bond
    (RDKit's ``MakeScaffoldGeneric``), merging scaffolds that differ only in heteroatoms.
    A SMILES that does not parse is an error naming its rows: featurise first
    (`taskmask.data.chem.featurize`) and split the rows it kept.
    """
    from taskmask.data.chem import parse_smiles, rdkit_module

    murcko = rdkit_module("rdkit.Chem.Scaffolds.MurckoScaffold")
    chem = rdkit_module("rdkit.Chem")
    mols, failures = parse_smiles(list(smiles))
    if failures:
        rows = [f.row for f in failures]
        raise TaskmaskError(
            f"{len(rows)} SMILES do not parse (rows {rows[:10]}); scaffold-split the rows "
            "that taskmask.data.chem.featurize kept"
        )
    out = []
    for mol in mols:
        core = murcko.GetScaffoldForMol(mol)
        if generic:
            core = murcko.MakeScaffoldGeneric(core)
        out.append(chem.MolToSmiles(core, isomericSmiles=include_chirality))
    return out


def _group_rows(keys: Sequence[str]) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for row, key in enumerate(keys):
        groups.setdefault(key, []).append(row)
    return list(groups.values())


def scaffold_split(
    smiles: Sequence[str],
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    *,
    seed: int = 0,
    method: ScaffoldMethod = "largest_first",
    generic: bool = False,
    include_chirality: bool = False,
) -> Split:
    """Split molecules so that no Bemis-Murcko scaffold straddles two parts.

    ``method``: ``largest_first`` (deterministic, MoleculeNet / OGB; ``seed`` unused) or
    ``balanced`` (chemprop's seeded variant); see the module docstring. ``generic`` and
    ``include_chirality`` as in `scaffolds` (OGB's splits keep chirality).
    """
    if method not in ("largest_first", "balanced"):
        raise TaskmaskError(f"method must be 'largest_first' or 'balanced', got {method!r}")
    n = len(smiles)
    if n < 1:
        raise TaskmaskError("no SMILES to split")
    n_train, n_val, _ = _sizes(n, fractions)
    groups = _group_rows(scaffolds(smiles, generic=generic, include_chirality=include_chirality))
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    if method == "largest_first":
        f_train, f_val, _ = _check_fractions(fractions)
        train_cut, val_cut = f_train * n, (f_train + f_val) * n
        groups.sort(key=lambda g: (len(g), g[-1]), reverse=True)
        for group in groups:
            if len(parts[0]) + len(group) <= train_cut:
                parts[0].extend(group)
            elif len(parts[0]) + len(parts[1]) + len(group) <= val_cut:
                parts[1].extend(group)
            else:
                parts[2].extend(group)
        return _as_split(*parts)
    n_test = n - n_train - n_val
    big = [g for g in groups if len(g) > n_val / 2 or len(g) > n_test / 2]
    small = [g for g in groups if not (len(g) > n_val / 2 or len(g) > n_test / 2)]
    rng = np.random.default_rng(seed)
    rng.shuffle(big)
    rng.shuffle(small)
    for group in big + small:
        if len(parts[0]) + len(group) <= n_train:
            parts[0].extend(group)
        elif len(parts[1]) + len(group) <= n_val:
            parts[1].extend(group)
        else:
            parts[2].extend(group)
    return _as_split(*parts)
