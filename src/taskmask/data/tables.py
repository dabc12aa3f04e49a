"""Reading data files: CSV, Parquet or NPZ into features and per-task raw labels.

The reader is picked by the file's suffix (``.csv``, ``.csv.gz``, ``.csv.bz2``, ``.parquet`` /
``.pq``, ``.npz``); a compressed CSV is read as it is, never unpacked to disk. A CSV or
Parquet column is one 1-D column; an NPZ array key is 1-D ``(N,)`` or 2-D ``(N, k)`` (k columns,
named ``key_0 .. key_{k-1}`` as features); one NPZ feature array of 3 or more dimensions
(series, images) is kept whole. In a CSV only an empty cell and the text ``NaN`` /
``nan`` mean "not a number"; any other text stays text, so a class named ``NA`` survives. Labels
come back raw (NaN, empty, sentinels included): `taskmask.tasks` decides what is missing.
Every problem is a `TaskmaskError` that names the file.
"""

from __future__ import annotations

import bz2
import csv
import difflib
import gzip
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from taskmask.data._memory import as_inputs
from taskmask.errors import TaskmaskError

if TYPE_CHECKING:
    from taskmask.data.chem import SmilesFailure, SmilesFeatures

CSV_MISSING = ("", "NaN", "nan")
TargetSource = str | Sequence[str]


def _check_unique(path: Path, names: Sequence[str]) -> None:
    """pandas renames a repeated column (``x``, ``x.1``); refuse it instead."""
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise TaskmaskError(
            f"{path}: columns {repeated} appear more than once in the header; column names "
            "must be unique"
        )


def _open_text(path: Path) -> IO[str]:
    """``path`` as text, decompressed on the fly for ``.gz`` / ``.bz2``."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rt", newline="", encoding="utf-8")
    if suffix == ".bz2":
        return bz2.open(path, "rt", newline="", encoding="utf-8")
    return open(path, newline="", encoding="utf-8")


def _csv_rows(path: Path) -> Iterator[list[str]]:
    with _open_text(path) as file:
        yield from csv.reader(file)


def _check_short_rows(path: Path, n_columns: int) -> None:
    """pandas pads a row with fewer fields than the header with NaN; name the first one."""
    rows = _csv_rows(path)
    next(rows, None)
    for row, fields in enumerate(rows):
        if fields and len(fields) < n_columns:
            raise TaskmaskError(
                f"{path}: row {row} has {len(fields)} fields; the header has {n_columns} "
                "columns (a missing value is an empty field between commas)"
            )


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    header = next(_csv_rows(path), [])
    _check_unique(path, header)
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=list(CSV_MISSING))
    except pd.errors.ParserError as error:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
        if found is None:
            raise
        expected, line, saw = found.groups()
        raise TaskmaskError(
            f"{path}: line {line} has {saw} fields; the header and the rows before have {expected}"
        ) from None
    if not isinstance(frame.index, pd.RangeIndex):  # pandas took the extra fields as an index
        raise TaskmaskError(
            f"{path}: the rows have more fields than the header's {len(header)} columns"
        )
    if len(frame.columns) and frame.iloc[:, -1].isna().any():  # short rows end in NaN
        _check_short_rows(path, len(frame.columns))
    return _columns_of(frame)


def _read_parquet(path: Path) -> dict[str, np.ndarray]:
    _check_unique(path, pq.ParquetFile(path).schema_arrow.names)
    return _columns_of(pd.read_parquet(path))


def _columns_of(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {str(name): frame[name].to_numpy() for name in frame.columns}


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    archive = np.load(path, allow_pickle=False)
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise TaskmaskError(f"{path}: expected an NPZ archive of named arrays, found one array")
    with archive:
        return {key: archive[key] for key in archive.files}


READERS = {
    ".csv": _read_csv,
    ".csv.gz": _read_csv,
    ".csv.bz2": _read_csv,
    ".parquet": _read_parquet,
    ".pq": _read_parquet,
    ".npz": _read_npz,
}


def file_type(path: Path) -> str:
    """The suffix that picks the reader: ``.csv.gz`` for ``x.csv.gz``, else the last one."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    double = "".join(suffixes)
    return double if len(suffixes) == 2 and double in READERS else path.suffix.lower()


@dataclass(frozen=True)
class Table:
    """The named columns (or NPZ arrays) of one file."""

    path: Path
    columns: Mapping[str, np.ndarray]

    @property
    def is_npz(self) -> bool:
        return file_type(self.path) == ".npz"

    def column(self, name: str, *, what: str) -> np.ndarray:
        """One column (or NPZ array); ``what`` says who asked, for the error message."""
        if name in self.columns:
            return self.columns[name]
        kind = "array" if self.is_npz else "column"
        names = list(self.columns)
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        shown = ", ".join(repr(n) for n in names[:8]) + (" ..." if len(names) > 8 else "")
        raise TaskmaskError(
            f"{self.path}: no {kind} {name!r} ({what}); the file has {len(names)} {kind}s: "
            f"{shown}{hint}"
        )


def read_table(path: str | Path) -> Table:
    """Read a whole file; `TaskmaskError` for a missing, unreadable or unknown-type file."""
    path = Path(path)
    reader = READERS.get(file_type(path))
    if reader is None:
        raise TaskmaskError(
            f"{path}: unknown file type {file_type(path)!r}; expected one of {sorted(READERS)}"
        )
    if not path.is_file():
        raise TaskmaskError(f"{path}: file not found")
    try:
        columns = reader(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        if isinstance(error, TaskmaskError):
            raise
        detail = " ".join(str(error).split()) or type(error).__name__
        kind = file_type(path).lstrip(".").upper()
        raise TaskmaskError(f"{path}: not a readable {kind} file ({detail})") from None
    return Table(path, columns)


def _as_number_column(table: Table, name: str, values: np.ndarray) -> np.ndarray:
    """A 1-D or 2-D feature array as float64; text is an error naming the column and row."""
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    flat = pd.DataFrame(values.reshape(len(values), -1))
    numbers = flat.apply(pd.to_numeric, errors="coerce")
    bad = (numbers.isna() & flat.notna()).to_numpy()
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise TaskmaskError(
            f"{table.path}: feature column {name!r} holds text ({flat.iat[row, col]!r} at row "
            f"{row}); features must be numbers"
        )
    return numbers.to_numpy(np.float64).reshape(values.shape)


def _check_float32(table: Table, name: str, values: np.ndarray) -> None:
    """Features are stored as float32: a finite value beyond its range would become inf."""
    limit = float(np.finfo(np.float32).max)
    with np.errstate(invalid="ignore"):
        beyond = np.isfinite(values) & (np.abs(values) > limit)  # inf: as_inputs says so
    if beyond.any():
        index = np.unravel_index(int(np.argmax(beyond.ravel())), values.shape)
        raise TaskmaskError(
            f"{table.path}: feature {name!r} holds {float(values[index])!r} at row "
            f"{index[0]}, beyond the float32 range (|x| <= {limit:.3g}) that features are stored in"
        )


def _check_rows(table: Table, name: str, values: np.ndarray, n_rows: int, what: str) -> None:
    if values.ndim not in (1, 2) or len(values) != n_rows:
        raise TaskmaskError(
            f"{table.path}: {what} {name!r} has shape {values.shape}; expected {n_rows} rows "
            "as (N,) or (N, k), like the features"
        )


def features(table: Table, names: Sequence[str]) -> tuple[torch.Tensor, list[str] | None]:
    """The feature matrix ``(N, n_features)`` float32 and one name per column; or, for one NPZ
    array of 3 or more dimensions (series ``(N, C, L)``, images ``(N, C, H, W)``), that array
    as is, without names."""
    first = table.column(names[0], what="features")
    if table.is_npz and len(names) == 1 and first.ndim >= 3:
        values = _as_number_column(table, names[0], first)
        _check_float32(table, names[0], values)
        return as_inputs(values, source=str(table.path)), None
    blocks, feature_names = [], []
    n_rows = len(first)
    if n_rows == 0:
        raise TaskmaskError(f"{table.path}: no rows; expected a header and at least one row")
    for name in names:
        values = table.column(name, what="features")
        _check_rows(table, name, values, n_rows, "feature")
        blocks.append(_as_number_column(table, name, values).reshape(n_rows, -1))
        _check_float32(table, name, blocks[-1])
        width = blocks[-1].shape[1]
        feature_names += [name] if values.ndim == 1 else [f"{name}_{j}" for j in range(width)]
    matrix = np.concatenate(blocks, axis=1)
    return as_inputs(matrix, source=str(table.path), names=feature_names), feature_names


def labels(table: Table, task: str, source: TargetSource, n_rows: int) -> np.ndarray:
    """A task's raw labels: one column as stored, or several stacked side by side ``(N, k)``."""
    what = f"task {task!r}"
    names = [source] if isinstance(source, str) else list(source)
    arrays = []
    for name in names:
        values = table.column(name, what=what)
        _check_rows(table, name, values, n_rows, f"label column of {what},")
        arrays.append(values)
    if isinstance(source, str):
        return arrays[0]
    return np.concatenate([a.reshape(n_rows, -1) for a in arrays], axis=1)


@dataclass(frozen=True)
class Dataset:
    """Features, their names and per-task raw labels read from ``path``. ``left_out`` lists the
    file's rows that could not be featurised (SMILES that do not parse) and are not here;
    ``rows`` holds, when some were, the file row of each row here; ``kept`` the columns asked
    to be kept as they are (ID columns for predictions), by name."""

    path: Path
    inputs: torch.Tensor
    feature_names: list[str] | None
    labels: dict[str, np.ndarray]
    left_out: tuple[SmilesFailure, ...] = ()
    rows: np.ndarray | None = field(default=None, repr=False)
    kept: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.inputs)

    def take(self, rows: np.ndarray) -> Dataset:
        """The rows at index array ``rows``."""
        return Dataset(
            self.path,
            self.inputs[torch.from_numpy(rows)],
            self.feature_names,
            {name: values[rows] for name, values in self.labels.items()},
            self.left_out,
            None if self.rows is None else self.rows[rows],
            {name: values[rows] for name, values in self.kept.items()},
        )


def _smiles_features(
    table: Table, smiles: SmilesFeatures
) -> tuple[Table, np.ndarray, list[str], list[SmilesFailure], np.ndarray | None]:
    """Fingerprints / descriptors of the SMILES column, and the table cut to the rows that
    parsed (their file rows in the last item; None when every row parsed)."""
    values = table.column(smiles.column, what="SMILES")
    if values.ndim != 1:
        raise TaskmaskError(f"{table.path}: SMILES {smiles.column!r} must be one column")
    matrix, kept, failures = smiles.featurize(values.tolist())
    if not failures:
        return table, matrix, smiles.feature_names(), [], None
    if len(kept) == 0:
        raise TaskmaskError(
            f"{table.path}: no SMILES in column {smiles.column!r} could be featurised "
            f"(row 0: {failures[0].reason})"
        )
    cut = Table(table.path, {name: column[kept] for name, column in table.columns.items()})
    return cut, matrix, smiles.feature_names(), failures, kept


def read_dataset(
    path: str | Path,
    *,
    feature_names: Sequence[str],
    targets: Mapping[str, TargetSource],
    smiles: SmilesFeatures | None = None,
    keep: Sequence[str] = (),
) -> Dataset:
    """Read ``path`` and take its features, per task name in ``targets`` its labels, and the
    ``keep`` columns as stored (`Dataset.kept`).
    With ``smiles``, the features computed from its SMILES column come first, followed by the
    ``feature_names`` columns (which may then be none); rows whose SMILES do not parse are left
    out (``Dataset.left_out``), never fatal."""
    table = read_table(path)
    left_out: list[SmilesFailure] = []
    rows = None
    if smiles is None:
        inputs, names = features(table, feature_names)
    else:
        table, matrix, names, left_out, rows = _smiles_features(table, smiles)
        if feature_names:
            extra, extra_names = features(table, feature_names)
            matrix = np.concatenate([matrix, extra.numpy()], axis=1)
            names = names + list(extra_names or [])
        inputs = as_inputs(matrix, source=str(table.path), names=names)
    raw = {task: labels(table, task, source, len(inputs)) for task, source in targets.items()}
    kept = {name: table.column(name, what="kept column") for name in keep}
    for name, values in kept.items():
        _check_rows(table, name, values, len(inputs), "kept column")
    return Dataset(table.path, inputs, names, raw, tuple(left_out), rows, kept)
