"""What ``taskmask evaluate`` and ``predict`` read and write: a saved run's config and model,
data files read for that model, and tables written atomically in the format their suffix names."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from taskmask._io import write_atomically
from taskmask.app.config import RunConfig, load_config
from taskmask.app.runs import CONFIG_FILE, _rows_of, read_with_generated
from taskmask.data.tables import Dataset
from taskmask.errors import TaskmaskError
from taskmask.model._model import MultiTaskModel
from taskmask.persistence import load_model


def open_run(run_dir: Path, *, verify: bool = True) -> tuple[RunConfig, MultiTaskModel]:
    """The run's config (its plugins imported first: they may register the model's kinds)
    and its model (``verify``: see `taskmask.load_model`)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        load_model(run_dir, verify=verify)  # the model files' problem first, if they have one
    config = load_config(path)
    return config, load_model(run_dir, verify=verify)


def read_for_model(
    config: RunConfig,
    model: MultiTaskModel,
    path: Path,
    *,
    with_labels: bool,
    keep: Sequence[str] = (),
) -> Dataset:
    """``path`` read for ``model`` (labels of its tasks with ``with_labels``; ``keep``
    columns as stored); `TaskmaskError` if its features do not fit the model."""
    tasks = model.task_names if with_labels else ()
    part = read_with_generated(config, path, tasks=tasks, keep=keep)
    if tuple(part.inputs.shape[1:]) != model.input_shape:
        raise TaskmaskError(
            f"{path}: features of shape {_rows_of(part.inputs.shape[1:])}; the model takes "
            f"{_rows_of(model.input_shape)}"
        )
    return part


def id_columns(config: RunConfig, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The columns that predictions keep: ``data.id_columns``, then ``extra`` (a name may be a
    comma list, as ``--keep-columns a,b``), each once."""
    names = [*config.data.id_columns]
    for item in extra:
        names += [name.strip() for name in item.split(",") if name.strip()]
    return tuple(dict.fromkeys(names))


def predictions_table(part: Dataset, predictions: pd.DataFrame) -> pd.DataFrame:
    """``predictions`` led by the kept columns of ``part`` and, when some file rows were left
    out, a ``row`` column (the file row of each); a kept column named like an output column
    is a `TaskmaskError`."""
    lead: dict[str, object] = dict(part.kept)
    if part.rows is not None:
        lead.setdefault("row", part.rows)
    clash = sorted(set(lead) & set(predictions.columns))
    if clash:
        raise TaskmaskError(
            f"{part.path}: kept columns {clash} have the names of prediction columns; "
            "rename them in the file"
        )
    return pd.concat([pd.DataFrame(lead, index=predictions.index), predictions], axis=1)


def check_writable_file(path: Path, *, what: str) -> None:
    """``path`` may be written as a file: it is not a directory, nor inside a file."""
    if path.is_dir():
        raise TaskmaskError(f"{path}: is a directory; {what} names the file to write")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise TaskmaskError(f"{parent}: is a file, so {path} ({what}) cannot be written")


def write_csv_atomically(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` (no index) to ``path`` through a temporary file and `os.replace`."""
    check_writable_file(path, what="the CSV output")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: frame.to_csv(tmp, index=False))


TABLE_WRITERS: dict[str, Callable[[pd.DataFrame, Path], object]] = {
    ".csv": lambda frame, tmp: frame.to_csv(tmp, index=False),
    ".parquet": lambda frame, tmp: frame.to_parquet(tmp, index=False),
    ".json": lambda frame, tmp: frame.to_json(tmp, orient="records", indent=1),
}
"""How `write_table` writes each file suffix (JSON: a list of one object per row)."""


def table_writer(path: Path) -> Callable[[pd.DataFrame, Path], object]:
    """How to write ``path``; `TaskmaskError` naming it if its suffix is not a known format."""
    writer = TABLE_WRITERS.get(Path(path).suffix.lower())
    if writer is None:
        raise TaskmaskError(
            f"{path}: unknown output format {Path(path).suffix or '(no suffix)'!r}; expected a "
            f"file ending in {', '.join(TABLE_WRITERS)}, or - for CSV on stdout"
        )
    return writer


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` atomically in the format its suffix names (`TABLE_WRITERS`)."""
    writer = table_writer(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: writer(frame, tmp))
