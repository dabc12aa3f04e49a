"""What the real-data benchmark scripts share: where the repository and the data are, the
common command-line flags, the skip when the data is absent, and writing results."""

from __future__ import annotations

import argparse
import json
import math
import platform
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import taskmask
from taskmask.data.missingness import MECHANISMS, hide_labels

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"


def benchmark_parser(doc: str, name: str, *, seeds: int) -> argparse.ArgumentParser:
    """A parser with ``--smoke``, ``--data-dir``, ``--out`` (default ``out/<name>``),
    ``--seeds`` (default ``seeds``) and ``--threads``; the description is the first paragraph
    of the script's docstring ``doc``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny slice, seconds")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=REPO / "out" / name)
    parser.add_argument(
        "--seeds", type=int, default=None, help=f"number of seeds (default {seeds})"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    return parser


def data_missing(path: Path, what: str, data_dir: Path) -> bool:
    """Whether ``path`` is absent; if so, say that the benchmark is skipped and why."""
    if path.is_file():
        return False
    print(f"skipped: {what} data not found under {data_dir} (see ../shared/data)")
    return True


def environment() -> dict[str, Any]:
    """The versions and thread count a result was measured with."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "taskmask": taskmask.__version__,
        "threads": torch.get_num_threads(),
    }


def jsonable(value: Any) -> Any:
    """``value`` for strict JSON: NaN (an undefined metric, a std over one seed) becomes
    ``null``, NumPy scalars Python numbers, tuples lists, data frames lists of rows."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, pd.DataFrame):
        return value.to_dict(orient="records")
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def write_results(out: Path, report: dict[str, Any], table: str) -> None:
    """``results.json`` (the report, with the environment) and ``results.md`` (the table)."""
    out.mkdir(parents=True, exist_ok=True)
    report = {**report, "environment": environment()}
    (out / "results.json").write_text(json.dumps(jsonable(report), indent=1))
    (out / "results.md").write_text(table + "\n")
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")


def chosen_settings(args: argparse.Namespace, full: Any, smoke: Any) -> Any:
    """The settings dataclass of a run: ``smoke`` with ``--smoke``, else ``full``; with
    ``--seeds N``, seeds ``0..N-1``. Also applies ``--threads``."""
    torch.set_num_threads(args.threads)
    settings = smoke if args.smoke else full
    if args.seeds is not None:
        settings = replace(settings, seeds=tuple(range(args.seeds)))
    return settings


SWEEP_RATES = (0.0, 0.25, 0.5, 0.75, 0.9)
SMOKE_SWEEP_RATES = (0.0, 0.5)
SWEEP_METHODS = ("masked", "fill_negative", "drop_rows", "single_task")


def sweep_cells(
    Y: np.ndarray, rows: np.ndarray, seed: int, rates: Sequence[float]
) -> Iterator[tuple[str, float, np.ndarray]]:
    """The missing-rate sweep's cells for one seed: ``(mechanism, rate, Y_thin)`` where
    ``Y_thin`` is ``Y`` with ``rate`` of the observed labels in ``rows`` hidden
    (`taskmask.data.missingness.hide_labels`, seeded by seed, rate and mechanism). Rate 0 comes
    once, under the first mechanism: with nothing hidden both are the same run."""
    for mechanism in MECHANISMS:
        for rate in rates:
            if rate == 0.0 and mechanism != MECHANISMS[0]:
                continue
            rng = np.random.default_rng([seed, int(rate * 100), MECHANISMS.index(mechanism)])
            yield mechanism, rate, hide_labels(Y, rate, mechanism, rng=rng, rows=rows)
