"""Training rows streamed from Parquet files larger than memory (see ``docs/streaming.md``).

`ParquetSource` reads a Parquet file, or a directory of them, one record batch at a time with
pyarrow, and hands the trainer one global batch after another (`ParquetSource.batches`, a
`taskmask.data.BatchSource`). Each epoch:

1. the row groups (of every file) come in an order drawn from the trainer's seeded generator;
   under torchrun each rank reads its own shard of them: each row group, in that order, goes to
   the rank with the fewest rows so far, so the ranks read disjoint rows and every row once;
2. the rows pass through a shuffle buffer of ``shuffle_buffer`` rows: once full, each row read
   takes the place of a buffered row drawn uniformly at random, which goes out (tf.data's
   shuffle buffer, vectorised: `taskmask.data._stream_batches`); the rest goes out shuffled at
   the end.
   ``shuffle_buffer=0`` shuffles each record batch on its own. A buffer at least as large as
   the data gives a uniform permutation of all rows;
3. the rows are cut into batches of this rank's `World.piece` of ``batch_size`` rows; a rank
   whose shard runs out trains on empty pieces until every rank is done, so every rank takes
   the same number of steps. Per-task loss sums and counts are all-reduced by the trainer:
   each task's loss is its mean over the observed labels of the global batch.

Only two numbers per epoch come from the shared generator (the row-group permutation, then a
seed for the buffers, each rank's own), so every rank's generator stays equal to the others'
and a checkpointed generator state gives the same next epoch. With one process the first of
them is the same ``randperm`` as `InMemoryBatches` draws.

Labels go through `taskmask.tasks` (a null cell is a missing label), exactly as in memory.
Features must be numeric columns without nulls, NaN or infinities. Memory holds the shuffle
buffer, one record batch of ``read_rows`` rows and the batches being trained on, whatever the
size of the files (plus their footers).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

import taskmask.data._stream_stats as stream_stats
from taskmask._world import World
from taskmask.data._batches import BatchSource
from taskmask.data._coverage import Coverage, coverage
from taskmask.data._memory import MultiTaskData
from taskmask.data._stream_batches import StreamedBatches, concat
from taskmask.errors import TaskmaskError
from taskmask.functional._labels import EncodedLabels
from taskmask.tasks._masking import encode_labels, resolve_task
from taskmask.tasks._task import Task, check_unique_names

SUFFIXES = (".parquet", ".pq")
DEFAULT_SHUFFLE_BUFFER = 100_000
DEFAULT_READ_ROWS = 65_536


Pack = Callable[[MultiTaskData], MultiTaskData]
"""How the trainer lays out a batch's labels (`taskmask.training.BatchLoss.pack`)."""


def _same(data: MultiTaskData) -> MultiTaskData:
    return data


class StreamedData(Protocol):
    """Training data that `taskmask.Trainer.fit` takes besides an in-memory `MultiTaskData`."""

    def __len__(self) -> int: ...

    def n_observed(self) -> dict[str, int]: ...

    def batches(
        self, tasks: Sequence[Task], batch_size: int, world: World, *, pack: Pack = _same
    ) -> BatchSource: ...


@dataclass(frozen=True)
class RowGroup:
    """Row group ``index`` of file ``path``: ``n_rows`` rows from row ``start`` of the file."""

    path: Path
    metadata: pq.FileMetaData
    index: int
    n_rows: int
    start: int


def parquet_files(path: str | Path) -> list[Path]:
    """``path`` itself, or the ``.parquet`` / ``.pq`` files under directory ``path`` in sorted
    order (names starting with ``.`` or ``_``, such as ``_SUCCESS``, are left out)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.suffix.lower() in SUFFIXES
            and p.is_file()
            and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
        )
        if not files:
            raise TaskmaskError(f"{path}: no {' or '.join(SUFFIXES)} files in this directory")
        return files
    if not path.is_file():
        raise TaskmaskError(f"{path}: file not found")
    return [path]


def _detail(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _open(path: Path, metadata: pq.FileMetaData | None = None) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path, metadata=metadata, pre_buffer=False, buffer_size=1 << 20)
    except (OSError, ValueError, pa.ArrowException) as error:
        raise TaskmaskError(f"{path}: not a readable Parquet file ({_detail(error)})") from None


def _check_schema(
    path: Path, schema: pa.Schema, features: Sequence[str], labels: Iterable[str]
) -> None:
    names = schema.names
    for what, wanted in (("feature", features), ("label", labels)):
        for name in wanted:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                shown = ", ".join(map(repr, names[:8])) + (" ..." if len(names) > 8 else "")
                raise TaskmaskError(
                    f"{path}: no {what} column {name!r}; the file has {len(names)} columns: "
                    f"{shown}{hint}"
                )
    for name in features:
        kind = schema.field(name).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or kind == pa.bool_()):
            raise TaskmaskError(
                f"{path}: feature column {name!r} has type {kind}; features must be numbers"
            )


def _feature_matrix(
    batch: pa.RecordBatch, names: Sequence[str], where: str, first: int
) -> np.ndarray:
    """``(n, F)`` float32; a null, NaN or infinite value is an error naming its column and
    its row in the file (``first`` is the batch's first row)."""
    out = np.empty((batch.num_rows, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        column = batch.column(name)
        if column.null_count:
            row = first + int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
            raise TaskmaskError(
                f"{where}: feature column {name!r} is null (missing) at row {row} of the file; "
                "features must be numbers"
            )
        with np.errstate(over="ignore"):
            out[:, j] = column.to_numpy(zero_copy_only=False)
    finite = np.isfinite(out)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise TaskmaskError(
            f"{where}: feature column {names[col]!r} is NaN or infinite at row {first + row} of "
            "the file; features must be finite float32 numbers"
        )
    return out


def _raw(column: pa.Array) -> np.ndarray:
    """A label column as `taskmask.tasks` takes it: numbers as float64 with NaN for nulls,
    anything else as objects with None for nulls."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or kind == pa.bool_():
        return column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    return column.to_numpy(zero_copy_only=False)


class ParquetSource:
    """Training data in a Parquet file or a directory of them, read in record batches.

    ``features`` names the numeric feature columns; ``tasks`` the tasks, whose labels are in
    ``targets[name]`` (one column, or several side by side for a multilabel or regression
    task; default: the column named as the task). Class names of multiclass tasks without
    ``labels``, and the outputs of the others, are resolved as `taskmask.api.resolve_tasks` does
    on the whole data, by one pass over those label columns only. ``shuffle_buffer`` (rows)
    and ``read_rows`` (rows per record batch read) bound the memory used.
    Files are opened and their columns checked here; labels are read by `label_stats`,
    features by `standardization`, each once (cached), and every epoch by `batches`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        features: Sequence[str],
        tasks: Sequence[Task],
        targets: Mapping[str, str | Sequence[str]] | None = None,
        shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
        read_rows: int = DEFAULT_READ_ROWS,
    ) -> None:
        check_unique_names(list(tasks))
        if shuffle_buffer < 0 or read_rows < 1:
            raise TaskmaskError(
                f"shuffle_buffer must be >= 0 and read_rows >= 1, got {shuffle_buffer}, {read_rows}"
            )
        self.path = Path(path)
        self.features = tuple(features)
        if not self.features:
            raise TaskmaskError(f"{self.path}: no feature columns given")
        unknown = sorted(set(targets or {}) - {t.name for t in tasks})
        if unknown:
            raise TaskmaskError(f"targets for unknown tasks {unknown}")
        self.targets = {t.name: _as_tuple((targets or {}).get(t.name, t.name)) for t in tasks}
        self.shuffle_buffer, self.read_rows = shuffle_buffer, read_rows
        self.row_groups = self._row_groups()
        if not self.row_groups:
            raise TaskmaskError(f"{self.path}: no rows")
        self.tasks = self._resolve(tuple(tasks))
        self._label_stats: stream_stats.LabelStats | None = None
        self._moments: stream_stats.Moments | None = None

    def _row_groups(self) -> list[RowGroup]:
        groups = []
        label_columns = [c for columns in self.targets.values() for c in columns]
        for path in parquet_files(self.path):
            file = _open(path)
            _check_schema(path, file.schema_arrow, self.features, label_columns)
            metadata, start = file.metadata, 0
            for index in range(metadata.num_row_groups):
                n_rows = metadata.row_group(index).num_rows
                if n_rows:
                    groups.append(RowGroup(path, metadata, index, n_rows, start))
                start += n_rows
        return groups

    def __len__(self) -> int:
        return sum(group.n_rows for group in self.row_groups)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (len(self.features),)

    def _record_batches(
        self, groups: Iterable[RowGroup], columns: Sequence[str]
    ) -> Iterator[tuple[RowGroup, int, pa.RecordBatch]]:
        """Each row group's record batches with the file row of their first row."""
        for group in groups:
            file = _open(group.path, group.metadata)
            first = group.start
            reading = file.iter_batches(self.read_rows, row_groups=[group.index], columns=columns)
            while True:
                try:
                    batch = next(reading, None)
                except (OSError, ValueError, pa.ArrowException) as error:
                    raise TaskmaskError(
                        f"{group.path}: row group {group.index} is not readable, the file is "
                        f"truncated or corrupt ({_detail(error)})"
                    ) from None
                if batch is None:
                    break
                if batch.num_rows:
                    yield group, first, batch
                first += batch.num_rows

    def _resolve(self, tasks: tuple[Task, ...]) -> tuple[Task, ...]:
        """Tasks with their class names (one pass over the unresolved multiclass columns) and
        output counts (the number of label columns)."""
        open_classes = [t for t in tasks if t.spec.targets == "classes" and t.labels is None]
        values: dict[str, set[object]] = {t.name: set() for t in open_classes}
        columns = [self.targets[t.name][0] for t in open_classes]
        if columns:
            for _, _, batch in self._record_batches(self.row_groups, columns):
                for task, column in zip(open_classes, columns, strict=True):
                    values[task.name].update(pc.unique(batch.column(column)).to_pylist())
        resolved = []
        for task in tasks:
            width = len(self.targets[task.name])
            raw = np.empty((0, width)) if width > 1 else np.empty(0)
            if task.name in values:
                raw = np.array(list(values[task.name]), dtype=object)
            resolved.append(resolve_task(task, raw))
            if task.spec.targets == "classes" and width != 1:
                raise TaskmaskError(f"task {task.name!r}: a {task.kind} task reads one column")
            if width not in (1, resolved[-1].label_columns):
                raise TaskmaskError(
                    f"task {task.name!r}: {width} label columns {list(self.targets[task.name])} "
                    f"for {resolved[-1].width} outputs {list(resolved[-1].output_names)}"
                )
        return tuple(resolved)

    def _labels(self, batch: pa.RecordBatch, task: Task, where: str) -> EncodedLabels:
        columns = self.targets[task.name]
        if len(columns) == 1:
            raw = _raw(batch.column(columns[0]))
        else:
            parts = [_raw(batch.column(c)) for c in columns]
            kinds = {p.dtype.kind for p in parts}
            raw = np.stack(parts, axis=1).astype(object if "O" in kinds else np.float64)
        return encode_labels(task, raw, source=where)

    def _chunks(
        self, groups: Iterable[RowGroup], tasks: Sequence[Task], *, features: bool = True
    ) -> Iterator[MultiTaskData]:
        """Encoded record batches (no feature columns when ``features`` is False)."""
        tasks = [t for t in tasks if t.name in self.targets]
        columns = [c for t in tasks for c in self.targets[t.name]]
        if features:
            columns = [*self.features, *columns]
        for group, first, batch in self._record_batches(groups, list(dict.fromkeys(columns))):
            where = f"{group.path}, row group {group.index} (row numbers from file row {first})"
            if features:
                inputs = torch.from_numpy(_feature_matrix(batch, self.features, where, first))
            else:
                inputs = torch.empty((batch.num_rows, 0))
            labels = {t.name: self._labels(batch, t, where) for t in tasks}
            yield MultiTaskData(inputs, labels)

    def read(self, *, tasks: Sequence[Task] | None = None) -> MultiTaskData:
        """Every row in memory, file by file and row group by row group (small data:
        validation files, tests), labels encoded for ``tasks`` (default: this source's)."""
        return concat(list(self._chunks(self.row_groups, tasks or self.tasks)))

    def _scan(self, *, features: bool) -> None:
        """One pass over the label columns (unless counted already), and the feature columns
        too when ``features``: label statistics and the features' moments."""
        tasks = self.tasks if self._label_stats is None else ()
        total, moments = stream_stats.label_stats(self.tasks, {}, 0), None
        for chunk in self._chunks(self.row_groups, tasks, features=features):
            if tasks:
                total = total + stream_stats.label_stats(self.tasks, chunk.labels, len(chunk))
            if features:
                part = stream_stats.moments(chunk.inputs.numpy())
                moments = part if moments is None else moments + part
        self._label_stats = self._label_stats or total
        self._moments = moments

    def label_stats(self) -> stream_stats.LabelStats:
        """Observed counts per task output over every row (one pass over the label columns, or
        none after `standardization`); every label is checked on the way."""
        if self._label_stats is None:
            self._scan(features=False)
        assert self._label_stats is not None
        return self._label_stats

    def n_observed(self) -> dict[str, int]:
        return self.label_stats().n_observed()

    def coverage(self) -> Coverage:
        """The training labels' coverage report (`taskmask.data.label_coverage`)."""
        return coverage(self.label_stats(), self.tasks)

    def standardization(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-feature mean and scale ``(1, F)`` over every row in one pass (exact, float64
        accumulation), as `taskmask.api.standardization` gives in memory."""
        if self._moments is None:
            self._scan(features=True)
        assert self._moments is not None  # a source has rows
        return self._moments.standardization()

    def balanced(self, tasks: Sequence[Task]) -> tuple[Task, ...]:
        """``tasks`` with ``pos_weight="balanced"`` replaced by negatives / positives per label
        over every row (`taskmask.data.balanced_tasks` on `label_stats`)."""
        return stream_stats.balanced_tasks(tasks, self.label_stats())

    def initial_biases(self) -> dict[str, torch.Tensor]:
        """Each head's starting bias over every row, for the tasks whose kind sets one
        (`taskmask.tasks.initial_bias`)."""
        return stream_stats.initial_biases(self.tasks, self.label_stats())

    def batches(
        self, tasks: Sequence[Task], batch_size: int, world: World, *, pack: Pack = _same
    ) -> StreamedBatches:
        """The `BatchSource` the trainer iterates: labels encoded for ``tasks`` (the model's),
        each chunk passed through ``pack``, on ``world.device`` (see the module docstring)."""
        tasks = [t for t in tasks if t.name in self.targets]

        def read(parts: Sequence[int]) -> Iterator[MultiTaskData]:
            groups = [self.row_groups[i] for i in parts]
            return (pack(chunk) for chunk in self._chunks(groups, tasks))

        sizes = [group.n_rows for group in self.row_groups]
        return StreamedBatches(sizes, read, self.shuffle_buffer, batch_size, world)


def _as_tuple(source: str | Sequence[str]) -> tuple[str, ...]:
    return (source,) if isinstance(source, str) else tuple(source)
