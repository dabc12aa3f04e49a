"""The feature cache: where it lives, what its key depends on, that a hit gives exactly what
computing gives without computing, and that a bad entry or an unwritable folder is a warning
and a recomputation, never an error."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from taskmask.data import _cache
from taskmask.data._cache import CACHE_ENV, cache_dir, content_key, entry_path

pytest.importorskip("rdkit", reason="the chem extra (RDKit) is not installed")

from taskmask.data import chem
from taskmask.data.chem import SmilesFeatures

SMILES = ["CCO", "not a molecule", "c1ccccc1O", "", None, "CC(=O)O"]


def test_the_folder_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "taskmask"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "taskmask"


def test_keys_are_length_prefixed_hashes() -> None:
    assert content_key("ab", "c") != content_key("a", "bc")
    assert content_key("ab", "c") == content_key(b"ab", b"c")
    assert len(content_key()) == 64


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = chem.featurize

    def counted(smiles, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(smiles))
        return real(smiles, **kwargs)

    monkeypatch.setattr(chem, "featurize", counted)
    return calls


def _same(a: tuple, b: tuple) -> None:  # type: ignore[type-arg]
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].dtype == b[0].dtype == np.float32
    np.testing.assert_array_equal(a[1], b[1])
    assert a[1].dtype == b[1].dtype == np.int64
    assert a[2] == b[2]


@pytest.mark.parametrize("kind", [("morgan",), ("descriptors",), ("morgan_count", "descriptors")])
def test_a_second_featurisation_reads_the_entry_and_gives_the_same_arrays(
    monkeypatch: pytest.MonkeyPatch, kind: tuple[str, ...]
) -> None:
    calls = _counting(monkeypatch)
    spec = SmilesFeatures(kind=kind, n_bits=64)
    first = spec.featurize(SMILES)
    assert entry_path(spec.cache_key(SMILES)).is_file()
    second = SmilesFeatures(kind=kind, n_bits=64).featurize(list(SMILES))
    assert calls == [len(SMILES)]
    _same(first, second)
    _same(first, chem.featurize(SMILES, kind=kind, n_bits=64))
    assert [f.row for f in second[2]] == [1, 3, 4]


def test_the_key_changes_with_content_order_and_settings() -> None:
    spec = SmilesFeatures(kind="morgan", n_bits=64)
    keys = {
        spec.cache_key(SMILES),
        spec.cache_key(SMILES[::-1]),
        spec.cache_key([*SMILES[:-1], "CC(=O)N"]),
        spec.cache_key([*SMILES[:4], float("nan"), SMILES[5]]),  # NaN is not None
        SmilesFeatures(kind="morgan", n_bits=128).cache_key(SMILES),
        SmilesFeatures(kind="morgan", radius=3, n_bits=64).cache_key(SMILES),
        SmilesFeatures(kind="morgan_count", n_bits=64).cache_key(SMILES),
        SmilesFeatures(kind="descriptors", descriptors=("MolWt",)).cache_key(SMILES),
        SmilesFeatures(kind="descriptors", descriptors=("MolLogP",)).cache_key(SMILES),
    }
    assert len(keys) == 9
    # settings a kind does not read leave the key alone; the column name is not content
    same = SmilesFeatures(kind="descriptors", descriptors=("MolWt",), n_bits=7, column="s")
    assert same.cache_key(SMILES) == SmilesFeatures(
        kind="descriptors", descriptors=("MolWt",)
    ).cache_key(SMILES)


def test_the_key_changes_with_the_library_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = SmilesFeatures(kind="morgan", n_bits=64)
    before = spec.cache_key(SMILES)
    monkeypatch.setattr(chem, "__version__", "0.0.0+other")
    assert spec.cache_key(SMILES) != before


def test_cache_false_neither_reads_nor_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting(monkeypatch)
    spec = SmilesFeatures(kind="morgan", n_bits=64, cache=False)
    spec.featurize(SMILES)
    spec.featurize(SMILES)
    assert calls == [len(SMILES)] * 2
    assert not (cache_dir() / "features").exists()


def _corrupt_truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def _corrupt_flipped(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _corrupt_pickled(path: Path) -> None:  # an object array needs pickle: never loaded
    with open(path, "wb") as file:
        np.savez(file, features=np.array([object()], dtype=object))


def _corrupt_npy(path: Path) -> None:  # one array, not an archive of them
    with open(path, "wb") as file:
        np.save(file, np.zeros(3))


def _corrupt_inconsistent(path: Path) -> None:  # readable, but the rows do not add up
    with np.load(path) as stored:
        arrays = dict(stored)
    arrays["kept"] = arrays["kept"][:-1]
    arrays["features"] = arrays["features"][:-1]
    with open(path, "wb") as file:
        np.savez(file, **arrays)


@pytest.mark.parametrize(
    "corrupt",
    [_corrupt_truncated, _corrupt_flipped, _corrupt_pickled, _corrupt_npy, _corrupt_inconsistent],
)
def test_a_bad_entry_is_a_warning_and_is_computed_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, corrupt: object
) -> None:
    spec = SmilesFeatures(kind="morgan", n_bits=64)
    expected = spec.featurize(SMILES)
    path = entry_path(spec.cache_key(SMILES))
    corrupt(path)  # type: ignore[operator]
    calls = _counting(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="taskmask"):
        got = spec.featurize(SMILES)
    _same(got, expected)
    assert calls == [len(SMILES)]
    assert str(path) in caplog.text and "computing again" in caplog.text
    _same(spec.featurize(SMILES), expected)  # the entry was written again, whole
    assert calls == [len(SMILES)]


def test_an_unwritable_folder_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(blocker))
    with caplog.at_level(logging.WARNING, logger="taskmask"):
        matrix, kept, _ = SmilesFeatures(kind="morgan", n_bits=64).featurize(SMILES)
    assert matrix.shape == (3, 64) and kept.tolist() == [0, 2, 5]
    assert "could not cache" in caplog.text


def test_entries_are_written_atomically(monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[Path] = []
    real = _cache.write_atomically

    def spy(path: Path, write) -> None:  # type: ignore[no-untyped-def]
        written.append(path)
        real(path, write)

    monkeypatch.setattr(_cache, "write_atomically", spy)
    spec = SmilesFeatures(kind="morgan", n_bits=64)
    spec.featurize(SMILES)
    assert written == [entry_path(spec.cache_key(SMILES))]
    assert [p.name for p in written[0].parent.iterdir()] == [written[0].name]
