"""Task entries that expand into one task per column of the training file.

```yaml
tasks:
  - from_columns: ["NR-*", "SR-*", extra_label]   # names or glob patterns (fnmatch, case kept)
    exclude: ["*_count"]                           # optional: names or patterns left out
    kind: binary                                   # optional: inferred per column without it
    pos_weight: balanced                           # any other Task field applies to every task
```

Each matched column becomes a task of that name (the column is its labels), in the file's
column order. Feature columns, the SMILES column, ``data.id_columns`` and the columns that other
task entries read are never matched. Without ``kind``, a column's kind is inferred from its
values, leaving out empty cells, NaN and the missing sentinel (``missing_sentinel``, default
-1): only 0 and 1 -> ``binary``; text -> ``multiclass``; numbers that are not all integers, or
integers taking more than `FEW_VALUES` values -> ``regression``; integers with at most
`FEW_VALUES` values other than {0, 1} are ambiguous (classes, counts or a score?) and an error
asking for ``kind``. A column goes to the first entry that matches it; a pattern that matches
no (remaining) column is an error.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from taskmask.data.tables import Table, read_table
from taskmask.errors import TaskmaskError

FEW_VALUES = 20
"""Integer columns with at most this many distinct values have no inferred kind."""


def infer_kind(values: np.ndarray, *, sentinel: float | None = -1, where: str) -> str:
    """``binary``, ``multiclass`` or ``regression`` for one label column (see the module
    docstring); `TaskmaskError` naming ``where`` when the values do not say which."""
    series = pd.Series(values.reshape(-1))
    series = series[series.notna()]
    numeric = pd.to_numeric(series, errors="coerce")
    if numeric.isna().any():
        return "multiclass"
    numbers = numeric.to_numpy(np.float64)
    if sentinel is not None:
        numbers = numbers[numbers != sentinel]
    distinct = np.unique(numbers)
    if len(distinct) == 0:
        raise TaskmaskError(f"{where}: no observed label, so no kind to infer; give kind")
    if set(distinct.tolist()) <= {0.0, 1.0}:
        return "binary"
    if np.all(distinct == np.round(distinct)) and len(distinct) <= FEW_VALUES:
        shown = ", ".join(f"{v:g}" for v in distinct[:8]) + (" ..." if len(distinct) > 8 else "")
        raise TaskmaskError(
            f"{where}: integer labels {{{shown}}} could be classes, counts or a score; give "
            "kind (multiclass, count or regression)"
        )
    return "regression"


def _matching(patterns: Sequence[str], names: Sequence[str]) -> dict[str, list[str]]:
    return {p: [n for n in names if fnmatch.fnmatchcase(n, p)] for p in patterns}


def _patterns(entry: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = entry.get(key, [])
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise TaskmaskError(f"{where}.{key}: expected a column name or pattern, or a list of them")
    return list(value)


def _expand_entry(
    entry: Mapping[str, Any], table: Table, taken: set[str], where: str
) -> list[dict[str, Any]]:
    include = _patterns(entry, "from_columns", where)
    if not include:
        raise TaskmaskError(f"{where}.from_columns: expected at least one name or pattern")
    names = [n for n in table.columns if n not in taken]
    excluded = {
        n for found in _matching(_patterns(entry, "exclude", where), names).values() for n in found
    }
    matched = _matching(include, names)
    empty = [p for p, found in matched.items() if not found]
    if empty:
        raise TaskmaskError(
            f"{where}.from_columns: {empty} match no column of {table.path} (features, the "
            "SMILES and ID columns and other tasks' columns are never matched)"
        )
    chosen = {n for found in matched.values() for n in found} - excluded
    fields = {k: v for k, v in entry.items() if k not in ("from_columns", "exclude")}
    sentinel = fields.get("missing_sentinel", -1)
    tasks = []
    for name in (n for n in names if n in chosen):
        kind = fields.get("kind") or infer_kind(
            table.columns[name], sentinel=sentinel, where=f"{where}: column {name!r}"
        )
        tasks.append({**fields, "name": name, "kind": kind, "column": name})
    taken |= chosen
    return tasks


def _reserved(raw: Mapping[str, Any]) -> set[str]:
    """The columns no pattern may match: features, SMILES, ID columns, other tasks' columns."""
    data = raw.get("data")
    data = data if isinstance(data, Mapping) else {}
    features = data.get("features", [])
    reserved = {features} if isinstance(features, str) else set(features or [])
    smiles = data.get("smiles")
    if isinstance(smiles, Mapping) and isinstance(smiles.get("column"), str):
        reserved.add(smiles["column"])
    reserved |= set(data.get("id_columns") or [])
    for entry in raw.get("tasks") or []:
        if isinstance(entry, Mapping) and "from_columns" not in entry:
            columns = entry.get("columns")
            reserved |= set(columns) if isinstance(columns, list | tuple) else set()
            reserved.add(str(entry.get("column") or entry.get("name")))
    return reserved


def expand_tasks(raw: Mapping[str, Any], base: Path, *, source: str | Path) -> dict[str, Any]:
    """``raw`` (a run config's mapping) with each ``from_columns`` entry of ``tasks`` replaced
    by its tasks; ``data.train`` (relative to ``base``) is read only when there is one."""
    entries = raw.get("tasks")
    if not isinstance(entries, list) or not any(
        isinstance(e, Mapping) and "from_columns" in e for e in entries
    ):
        return dict(raw)
    data = raw.get("data")
    if not isinstance(data, Mapping) or not isinstance(data.get("train"), str):
        raise TaskmaskError(f"{source}: tasks from_columns needs data.train, a file to read")
    table = read_table(base / Path(data["train"]).expanduser())
    taken = _reserved(raw)
    tasks: list[Any] = []
    for index, entry in enumerate(entries):
        if isinstance(entry, Mapping) and "from_columns" in entry:
            tasks += _expand_entry(entry, table, taken, f"{source}: tasks[{index}]")
        else:
            tasks.append(entry)
    return {**raw, "tasks": tasks}
