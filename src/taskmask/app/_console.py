"""What the CLI shows on the console: metric tables on stdout, the ``taskmask`` logger on
stderr (through tqdm, so a progress bar stays below), and one line per error."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import yaml
from pydantic import ValidationError
from tqdm.auto import tqdm

from taskmask.app.config import format_validation_error, yaml_problem
from taskmask.functional._metrics import MetricValue, Undefined, summary_keys

logger = logging.getLogger("taskmask")


def _cell(key: str, value: MetricValue) -> str:
    if isinstance(value, Undefined):
        return f"undefined ({value.reason})"
    if key.startswith(("n_observed", "support")):
        return f"{value:.0f}"
    return f"{value:.4f}"


def format_metrics(metrics: Mapping[str, Mapping[str, MetricValue]]) -> str:
    """Per task, its summary metrics (no per-label keys) as an aligned text table."""
    rows = [("task", "metric", "value")]
    for task, values in metrics.items():
        for i, key in enumerate(summary_keys(values)):
            rows.append(("" if i else task, key, _cell(key, values[key])))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}".rstrip() for a, b, c in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


class _StderrHandler(logging.Handler):
    """Writes log lines to stderr through tqdm, so that a progress bar is redrawn below them."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return f"warning: {text}" if record.levelno >= logging.WARNING else text


@contextmanager
def log_to_stderr(*, quiet: bool, verbose: bool) -> Iterator[None]:
    """The ``taskmask`` logger to stderr at the level ``-q`` / ``-v`` choose, for one command."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = _StderrHandler()
    handler.setFormatter(_Formatter())
    previous = logger.level
    logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def describe_error(error: Exception) -> str:
    """One line for a user's error: config fields, YAML position, the path of an OS error."""
    if isinstance(error, ValidationError):
        return format_validation_error(error, source="input")
    if isinstance(error, yaml.YAMLError):
        return f"not valid YAML: {yaml_problem(error)}"
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    return str(error)
