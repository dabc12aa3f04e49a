"""Molecular features from SMILES with RDKit (the optional extra ``taskmask[chem]``).

`featurize` turns SMILES into a float32 matrix for `taskmask.fit`. Kinds:

- ``morgan``: Morgan / ECFP bits (Rogers & Hahn, J. Chem. Inf. Model. 50, 742 (2010),
  doi:10.1021/ci100050t; ``radius`` 2 is ECFP4), ``n_bits`` columns of 0 / 1, from RDKit's
  ``rdFingerprintGenerator``;
- ``morgan_count``: the same hashed environments, counted (each count >= its bit);
- ``descriptors``: RDKit 2-D descriptors (``Descriptors.descList``), by default all but
  ``Ipc`` and ``AvgIpc`` (see `SLOW_OR_UNBOUNDED`).

Several kinds may be given at once; their columns are concatenated in the order given.

`SmilesFeatures` (``data.smiles`` of a run config) keeps what it computes in the feature cache
(`taskmask.data._cache`: ``$TASKMASK_CACHE_DIR``, else ``$XDG_CACHE_HOME/taskmask`` or
``~/.cache/taskmask``), keyed by the SHA-256 of the SMILES column, the settings and the RDKit
and taskmask versions, so train, evaluate and predict featurise a file once; ``cache: false``
turns it off.

A SMILES that RDKit cannot parse or sanitise (Tox21 has 8 aluminium compounds written as
``[AlH3]``), an empty cell or a non-string is never fatal: its row is left out of the matrix and
reported as a `SmilesFailure` with the reason. RDKit's own log lines are silenced while
featurising. RDKit is imported on first use, so ``import taskmask`` never needs it.

>>> X, kept, failures = featurize(["CCO", "not a molecule", "c1ccccc1"], n_bits=1024)
>>> X.shape, kept.tolist(), [f.row for f in failures]
((2, 1024), [0, 2], [1])
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from taskmask._version import __version__
from taskmask.data._cache import content_key, discard_entry, load_entry, store_entry
from taskmask.errors import TaskmaskError

FeatureKind = Literal["morgan", "morgan_count", "descriptors"]
KINDS: tuple[str, ...] = ("morgan", "morgan_count", "descriptors")

SLOW_OR_UNBOUNDED = ("Ipc", "AvgIpc")
"""Left out of the default descriptors: ``Ipc`` (the information content of the coefficients
of the characteristic polynomial) grows exponentially with size, past 1e36 on Tox21, and
``AvgIpc`` alone takes more than half of the time of all 217 descriptors (RDKit 2026.09).
Name them in ``descriptors=`` to get them anyway."""


@dataclass(frozen=True)
class SmilesFailure:
    """A row left out: its index in the input, the SMILES as given, and why."""

    row: int
    smiles: str
    reason: str


def rdkit_module(module: str) -> Any:
    """Import an RDKit module; a `TaskmaskError` naming the ``chem`` extra when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise TaskmaskError(
            f"molecular features need RDKit ({error}); install the extra: "
            "pip install 'taskmask[chem]'"
        ) from None


@contextmanager
def _quiet_rdkit() -> Iterator[None]:
    """Silence RDKit's log (parse errors, valence messages) for the block; restores it after."""
    block = rdkit_module("rdkit.rdBase").BlockLogs()
    try:
        yield
    finally:
        del block


def parse_smiles(smiles: Sequence[Any]) -> tuple[list[Any], list[SmilesFailure]]:
    """RDKit molecules for the SMILES that parse (``None`` in their place for the others) and
    one `SmilesFailure` per row that does not: empty or not a string, a syntax error, or a
    sanitisation error (with RDKit's message, e.g. an impossible valence)."""
    chem = rdkit_module("rdkit.Chem")
    mols: list[Any] = []
    failures: list[SmilesFailure] = []
    with _quiet_rdkit():
        for row, text in enumerate(smiles):
            mol, reason = None, ""
            if not isinstance(text, str) or not text.strip():
                reason = "empty or not a string"
            else:
                mol = chem.MolFromSmiles(text, sanitize=False)
                if mol is None:
                    reason = "SMILES syntax error"
                else:
                    try:
                        chem.SanitizeMol(mol)
                    except Exception as error:  # RDKit raises several exception types
                        mol, reason = None, f"sanitisation failed: {error}"
            if mol is None:
                failures.append(SmilesFailure(row, str(text), reason))
            mols.append(mol)
    return mols, failures


def descriptor_names(names: Sequence[str] | None = None) -> tuple[str, ...]:
    """The RDKit descriptor names a ``descriptors`` featurisation computes, in column order:
    ``names`` checked against ``Descriptors.descList``, or by default all of them except
    `SLOW_OR_UNBOUNDED`."""
    available = [name for name, _ in rdkit_module("rdkit.Chem.Descriptors").descList]
    if names is None:
        return tuple(n for n in available if n not in SLOW_OR_UNBOUNDED)
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise TaskmaskError(f"unknown RDKit descriptors {unknown}; see Descriptors.descList")
    return tuple(names)


def _morgan(mols: list[Any], *, radius: int, n_bits: int, counts: bool) -> np.ndarray:
    generator = rdkit_module("rdkit.Chem.rdFingerprintGenerator").GetMorganGenerator(
        radius=radius, fpSize=n_bits
    )
    fingerprint = (
        generator.GetCountFingerprintAsNumPy if counts else generator.GetFingerprintAsNumPy
    )
    out = np.zeros((len(mols), n_bits), dtype=np.float32)
    for i, mol in enumerate(mols):
        out[i] = fingerprint(mol)
    return out


def _descriptors(mols: list[Any], names: Sequence[str] | None) -> np.ndarray:
    """Descriptor values; NaN, +-inf and values beyond the float32 range become 0 (see
    `featurize`)."""
    functions: dict[str, Callable[[Any], float]] = dict(
        rdkit_module("rdkit.Chem.Descriptors").descList
    )
    chosen = [functions[name] for name in descriptor_names(names)]
    values = np.zeros((len(mols), len(chosen)), dtype=np.float64)
    with _quiet_rdkit():
        for i, mol in enumerate(mols):
            for j, function in enumerate(chosen):
                try:
                    values[i, j] = function(mol)
                except Exception:  # a descriptor that fails on one molecule is a missing value
                    values[i, j] = np.nan
    bad = ~np.isfinite(values) | (np.abs(values) > np.finfo(np.float32).max)
    return np.where(bad, 0.0, values).astype(np.float32)


def featurize(
    smiles: Sequence[Any],
    *,
    kind: FeatureKind | Sequence[FeatureKind] = "morgan",
    radius: int = 2,
    n_bits: int = 2048,
    descriptors: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[SmilesFailure]]:
    """Features of the SMILES that parse: ``(X, kept, failures)``.

    ``X`` is ``(len(kept), n_features)`` float32; ``kept`` (int64) holds the input row of each
    of its rows; ``failures`` has one `SmilesFailure` per row left out, so
    ``len(kept) + len(failures) == len(smiles)``. ``kind`` is one kind or a sequence of kinds
    whose columns are concatenated (see the module docstring). ``radius`` (>= 0) and ``n_bits``
    (>= 1) set the Morgan fingerprints. ``descriptors`` names the RDKit descriptors to compute
    (default `descriptor_names()`). A descriptor RDKit cannot compute for a molecule (NaN, e.g.
    Gasteiger charges of some metal compounds), an infinite one, or one too large for float32
    is set to 0, so that ``X`` is always finite.
    """
    kinds = [kind] if isinstance(kind, str) else list(kind)
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise TaskmaskError(f"kind must be one or more of {list(KINDS)}, got {kind!r}")
    if radius < 0 or n_bits < 1:
        raise TaskmaskError(f"need radius >= 0 and n_bits >= 1, got radius={radius}, {n_bits=}")
    if isinstance(smiles, str):
        raise TaskmaskError("smiles must be a sequence of SMILES strings, not one string")
    mols, failures = parse_smiles(list(smiles))
    kept = np.array([i for i, mol in enumerate(mols) if mol is not None], dtype=np.int64)
    good = [mols[i] for i in kept]
    blocks = [
        _descriptors(good, descriptors)
        if k == "descriptors"
        else _morgan(good, radius=radius, n_bits=n_bits, counts=k == "morgan_count")
        for k in kinds
    ]
    return np.concatenate(blocks, axis=1), kept, failures


def feature_names(
    kind: FeatureKind | Sequence[FeatureKind] = "morgan",
    *,
    n_bits: int = 2048,
    descriptors: Sequence[str] | None = None,
) -> list[str]:
    """Column names of `featurize`'s matrix for the same settings: ``morgan_0..``,
    ``morgan_count_0..``, then the descriptor names."""
    kinds = [kind] if isinstance(kind, str) else list(kind)
    names: list[str] = []
    for k in kinds:
        if k == "descriptors":
            names.extend(descriptor_names(descriptors))
        else:
            names.extend(f"{k}_{i}" for i in range(n_bits))
    return names


def failure_report(failures: Sequence[SmilesFailure], *, limit: int = 10) -> str:
    """One line per failure (the first ``limit``), after a count: for logs and CLI output."""
    lines = [f"{len(failures)} SMILES could not be featurised and were left out"]
    lines += [f"  row {f.row}: {f.smiles!r}: {f.reason}" for f in failures[:limit]]
    if len(failures) > limit:
        lines.append(f"  ... and {len(failures) - limit} more")
    return "\n".join(lines)


class SmilesFeatures(BaseModel):
    """Features computed from a SMILES column of a data file (``data.smiles`` in a run config):
    the settings of `featurize`. Rows whose SMILES do not parse are left out and reported.

    ```yaml
    data:
      smiles: {column: smiles, kind: [morgan, descriptors], radius: 2, n_bits: 2048}
    ```

    ``cache`` (default true) reads and writes the feature cache (module docstring).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str = "smiles"
    kind: tuple[FeatureKind, ...] = Field(default=("morgan",), min_length=1)
    radius: int = Field(default=2, ge=0)
    n_bits: int = Field(default=2048, ge=1)
    descriptors: tuple[str, ...] | None = None
    cache: bool = True

    @field_validator("kind", mode="before")
    @classmethod
    def _one_kind(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    def featurize(
        self, smiles: Sequence[Any]
    ) -> tuple[np.ndarray, np.ndarray, list[SmilesFailure]]:
        """`featurize` with these settings, through the feature cache when ``cache``."""
        if not self.cache:
            return self._computed(smiles)
        key = self.cache_key(smiles)
        what = f"{len(smiles)} SMILES featurised as {list(self.kind)}"
        entry = load_entry(key, _ENTRY, what=what)
        if entry is not None:
            found = _from_entry(entry, len(smiles), len(self.feature_names()))
            if isinstance(found, tuple):
                return found
            discard_entry(key, what=what, reason=found)
        matrix, kept, failures = self._computed(smiles)
        store_entry(key, _to_entry(matrix, kept, failures), what=what)
        return matrix, kept, failures

    def _computed(
        self, smiles: Sequence[Any]
    ) -> tuple[np.ndarray, np.ndarray, list[SmilesFailure]]:
        return featurize(
            smiles,
            kind=self.kind,
            radius=self.radius,
            n_bits=self.n_bits,
            descriptors=self.descriptors,
        )

    def cache_key(self, smiles: Sequence[Any]) -> str:
        """The feature-cache key of ``smiles`` under these settings: SHA-256 of the SMILES (in
        order, non-strings by type and text), the kinds, the Morgan settings, the descriptor
        names and the RDKit and taskmask versions."""
        morgan = any(k != "descriptors" for k in self.kind)
        settings = {
            "kind": list(self.kind),
            "radius": self.radius if morgan else None,
            "n_bits": self.n_bits if morgan else None,
            "descriptors": (
                list(descriptor_names(self.descriptors)) if "descriptors" in self.kind else None
            ),
            "rdkit": rdkit_module("rdkit").__version__,
            "taskmask": __version__,
        }
        values = [v if isinstance(v, str) else [type(v).__name__, str(v)] for v in smiles]
        return content_key(json.dumps(settings, sort_keys=True), json.dumps(values))

    def feature_names(self) -> list[str]:
        """The names of the columns `featurize` returns, in order."""
        return feature_names(self.kind, n_bits=self.n_bits, descriptors=self.descriptors)


_ENTRY = ("features", "kept", "failed_rows", "failed_smiles", "failed_reasons")


def _to_entry(
    matrix: np.ndarray, kept: np.ndarray, failures: Sequence[SmilesFailure]
) -> dict[str, np.ndarray]:
    return {
        "features": matrix,
        "kept": kept,
        "failed_rows": np.array([f.row for f in failures], dtype=np.int64),
        "failed_smiles": np.array([f.smiles for f in failures], dtype=np.str_),
        "failed_reasons": np.array([f.reason for f in failures], dtype=np.str_),
    }


def _from_entry(
    entry: dict[str, np.ndarray], n_rows: int, n_features: int
) -> tuple[np.ndarray, np.ndarray, list[SmilesFailure]] | str:
    """The cached ``(X, kept, failures)``, or why the entry does not fit (then recomputed)."""
    matrix, kept, rows = entry["features"], entry["kept"], entry["failed_rows"]
    texts, reasons = entry["failed_smiles"], entry["failed_reasons"]
    if matrix.dtype != np.float32 or matrix.shape != (len(kept), n_features):
        return f"features of shape {matrix.shape} {matrix.dtype} for {len(kept)} rows"
    if (
        kept.dtype != np.int64
        or rows.dtype != np.int64
        or not len(rows) == len(texts) == len(reasons)
    ):
        return "row indices of the wrong type or failures of unequal lengths"
    if not np.array_equal(np.sort(np.concatenate([kept, rows])), np.arange(n_rows)):
        return f"kept and failed rows do not partition the {n_rows} rows"
    if texts.dtype.type is not np.str_ or reasons.dtype.type is not np.str_:
        return "failure texts that are not text"
    if not np.isfinite(matrix).all():
        return "features that are not finite"
    failures = [
        SmilesFailure(int(r), str(t), str(why))
        for r, t, why in zip(rows.tolist(), texts.tolist(), reasons.tolist(), strict=True)
    ]
    return matrix, kept, failures
