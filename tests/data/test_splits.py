"""Splits: disjoint parts covering every row, the sizes asked for, repeatable by seed, stratified
on request, and no Bemis-Murcko scaffold in two parts."""

from __future__ import annotations

import doctest
from collections import Counter

import numpy as np
import pytest

from taskmask import TaskmaskError
from taskmask.data import splits
from taskmask.data.splits import Split, random_split

FRACTIONS = [(0.8, 0.1, 0.1), (0.6, 0.2, 0.2), (0.5, 0.5, 0.0), (1 / 3, 1 / 3, 1 / 3)]


def _check_partition(split: Split, n: int) -> None:
    for part in split:
        assert part.dtype == np.int64
        assert np.all(np.diff(part) > 0)  # sorted, no repeats
    rows = np.concatenate(split)
    assert sorted(rows.tolist()) == list(range(n))


@pytest.mark.parametrize("fractions", FRACTIONS)
@pytest.mark.parametrize("n", [1, 7, 100, 1001])
def test_random_split_is_a_partition_of_the_asked_sizes(
    n: int, fractions: tuple[float, float, float]
) -> None:
    split = random_split(n, fractions, seed=3)
    _check_partition(split, n)
    assert len(split.validation) == round(fractions[1] * n)
    assert len(split.test) == round(fractions[2] * n)


def test_random_split_is_seeded() -> None:
    a, b, c = (random_split(500, seed=s) for s in (1, 1, 2))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.test, c.test)


def test_stratified_split_keeps_class_proportions() -> None:
    labels = np.repeat([0, 1], [900, 100])
    split = random_split(1000, seed=0, stratify=labels)
    _check_partition(split, 1000)
    for part in split:
        assert labels[part].mean() == pytest.approx(0.1, abs=0.011)


@pytest.mark.parametrize(
    ("fractions", "match"),
    [((0.8, 0.1), "3 non-negative"), ((0.8, 0.3, -0.1), "3 non-negative"), ((0.5, 0.2, 0.2), "1")],
)
def test_bad_fractions_are_named(fractions: tuple[float, ...], match: str) -> None:
    with pytest.raises(TaskmaskError, match=match):
        random_split(10, fractions)


def test_bad_stratify_is_named() -> None:
    with pytest.raises(TaskmaskError, match="stratify"):
        random_split(10, stratify=np.zeros(9))
    with pytest.raises(TaskmaskError, match="cannot stratify"):
        random_split(10, stratify=np.r_[np.zeros(9), 1])


# --- scaffold splits (need RDKit) ------------------------------------------------------------

RINGS = ["c1ccccc1", "C1CCCCC1", "c1ccncc1", "C1CCOC1", "c1ccc2ccccc2c1", "C1CC1", "c1ccsc1"]
CHAINS = ["C", "CC", "CCO", "CCN", "ClCC", "OCCO", "CC(C)O", "CCCC", "NCC(=O)O"]


def _library(n: int, seed: int) -> list[str]:
    """``n`` molecules: ring systems with different side chains, and acyclic chains."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        chain = CHAINS[rng.integers(len(CHAINS))]
        if rng.random() < 0.2:
            out.append(chain)
        else:
            ring = RINGS[rng.integers(len(RINGS))]
            out.append(f"{chain}{ring}" if rng.random() < 0.5 else ring)
    return out


@pytest.fixture(scope="module")
def library() -> list[str]:
    pytest.importorskip("rdkit", reason="the chem extra (RDKit) is not installed")
    return _library(300, seed=0)


def test_scaffolds_of_known_molecules() -> None:
    pytest.importorskip("rdkit", reason="the chem extra (RDKit) is not installed")
    found = splits.scaffolds(["CCc1ccccc1", "c1ccccc1CCC1CC1", "CCO", "Cc1ccncc1"])
    assert found == ["c1ccccc1", "c1ccc(CCC2CC2)cc1", "", "c1ccncc1"]
    generic = splits.scaffolds(["Cc1ccncc1", "CC1CCCCC1"], generic=True)
    assert generic[0] == generic[1] == "C1CCCCC1"


@pytest.mark.parametrize("method", ["largest_first", "balanced"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_scaffold_straddles_two_parts(library: list[str], method: str, seed: int) -> None:
    split = splits.scaffold_split(library, (0.8, 0.1, 0.1), seed=seed, method=method)  # type: ignore[arg-type]
    _check_partition(split, len(library))
    keys = splits.scaffolds(library)
    owner: dict[str, int] = {}
    for part, rows in enumerate(split):
        for row in rows:
            assert owner.setdefault(keys[row], part) == part, keys[row]
    assert len(split.train) <= 0.8 * len(library)


def test_largest_first_is_deterministic_and_puts_big_groups_in_train(library: list[str]) -> None:
    a = splits.scaffold_split(library, seed=0)
    b = splits.scaffold_split(library, seed=99)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    keys = splits.scaffolds(library)
    biggest = Counter(keys).most_common(1)[0][0]
    assert {keys[r] for r in a.train} >= {biggest}


def test_balanced_is_seeded(library: list[str]) -> None:
    a, b, c = (splits.scaffold_split(library, seed=s, method="balanced") for s in (5, 5, 6))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_scaffold_split_rejects_unparsable_smiles() -> None:
    pytest.importorskip("rdkit", reason="the chem extra (RDKit) is not installed")
    with pytest.raises(TaskmaskError, match=r"rows \[1\]"):
        splits.scaffold_split(["CCO", "C1CC", "c1ccccc1"])
    with pytest.raises(TaskmaskError, match="method"):
        splits.scaffold_split(["CCO"], method="random")  # type: ignore[arg-type]


def test_doctests() -> None:
    assert doctest.testmod(splits).failed == 0
