"""The ``taskmask`` command line: ``train``, ``evaluate``, ``predict`` and ``demo``.

An adapter over the Python API (`taskmask.api.fit` / `evaluate`, `taskmask.predict`,
`taskmask.persistence`) with no training logic of its own. A run directory holds
``model.safetensors`` + ``model.json``, the resolved ``config.yaml`` (absolute data paths, label
and class names filled in), ``metrics.json`` (``{"validation"|"test": {task: {metric: value}}}``),
``history.csv``, ``plots/*.png`` and the training labels' coverage (``coverage.csv``,
``co_observed.csv``, also printed before training); it is written atomically. Bad input
(config, files, columns, labels) exits with code 2 and a message on stderr naming the file,
column or task.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import yaml
from pydantic import ValidationError

from taskmask.api import FitResult, evaluate, fit, resolve_tasks
from taskmask.config import RunConfig, format_validation_error, load_config, yaml_problem
from taskmask.coverage import Coverage, label_coverage
from taskmask.data import MultiTaskData, make_data, split
from taskmask.errors import TaskmaskError
from taskmask.metrics import MetricValue, Undefined, to_jsonable
from taskmask.model import MultiTaskModel
from taskmask.persistence import atomic_directory, load_model, write_model_files
from taskmask.predict import predict, predictions_frame, tune_thresholds
from taskmask.tables import Dataset, read_dataset
from taskmask.tasks import Task

EXIT_BAD_INPUT = 2
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
PLOTS_DIR = "plots"
COVERAGE_FILE = "coverage.csv"
CO_OBSERVED_FILE = "co_observed.csv"

Metrics = dict[str, dict[str, MetricValue]]


@dataclass
class TrainRun:
    """What `train_run` produced: the fit, the resolved config, the metrics it wrote."""

    fit: FitResult
    config: RunConfig
    metrics: dict[str, Metrics]
    coverage: Coverage


def _rows_of(shape: Sequence[int]) -> str:
    return f"(N, {', '.join(map(str, shape))})"


def _check_part(
    part: Dataset, tasks: Sequence[Task], shape: Sequence[int], *, train: bool
) -> MultiTaskData:
    """Encode a file's labels once, so that label errors name the file; check its shape."""
    if tuple(part.inputs.shape[1:]) != tuple(shape):
        raise TaskmaskError(
            f"{part.path}: features of shape {_rows_of(part.inputs.shape[1:])}; expected "
            f"{_rows_of(shape)} as in the training file"
        )
    data = make_data(
        part.inputs, part.labels, tasks, source=str(part.path), feature_names=part.feature_names
    )
    empty = [name for name, count in data.n_observed().items() if count == 0]
    if train and empty:
        raise TaskmaskError(
            f"{part.path}: tasks {empty} have no observed label at all; every task needs "
            "at least one (check the column names and the missing-value encoding)"
        )
    return data


def _split(part: Dataset, fraction: float, *, seed: int) -> tuple[Dataset, Dataset]:
    """The rows that ``fit(validation_split=fraction, seed=seed)`` trains on and holds out."""
    rows = MultiTaskData(torch.arange(len(part))[:, None], {})
    kept, held = split(rows, fraction, generator=torch.Generator().manual_seed(seed))
    return part.take(kept.inputs[:, 0].numpy()), part.take(held.inputs[:, 0].numpy())


def _metrics(model: MultiTaskModel, part: Dataset) -> Metrics:
    return evaluate(model, part.inputs, part.labels, source=str(part.path))


def _write_run(directory: Path, run: TrainRun) -> None:
    from taskmask.plots import plot_history

    write_model_files(run.fit.model, directory)
    run.coverage.labels.to_csv(directory / COVERAGE_FILE, index=False)
    run.coverage.co_observed.to_csv(directory / CO_OBSERVED_FILE)
    (directory / CONFIG_FILE).write_text(run.config.to_yaml(), encoding="utf-8")
    metrics = {
        part: {task: to_jsonable(values) for task, values in by_task.items()}
        for part, by_task in run.metrics.items()
    }
    (directory / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    run.fit.history.to_csv(directory / HISTORY_FILE, index=False)
    plot_history(run.fit.history, directory / PLOTS_DIR)


def train_run(
    config: RunConfig,
    out_dir: Path,
    *,
    progress: bool | None = None,
    report: Callable[[str], None] | None = None,
) -> TrainRun:
    """Read every file, check every label, train, then write run directory ``out_dir``
    atomically (replacing it). Nothing is written when anything fails. ``report`` receives
    the training data's label coverage before training starts."""
    data = config.data
    targets = {spec.name: spec.source for spec in config.tasks}
    train = read_dataset(data.train, feature_names=data.features, targets=targets)
    others = {
        name: read_dataset(path, feature_names=data.features, targets=targets)
        for name, path in (("validation", data.validation), ("test", data.test))
        if path is not None
    }
    tasks = resolve_tasks(config.task_list(), train.labels)
    for part in others.values():
        _check_part(part, tasks, train.inputs.shape[1:], train=False)
    coverage = label_coverage(_check_part(train, tasks, train.inputs.shape[1:], train=True), tasks)
    if report is not None:
        report(coverage.to_text())
    if "validation" not in others and data.split_fraction > 0:
        train, others["validation"] = _split(train, data.split_fraction, seed=config.training.seed)
    validation = others.get("validation")
    result = fit(
        train.inputs,
        train.labels,
        tasks,
        trunk=config.model.trunk,
        validation=None if validation is None else (validation.inputs, validation.labels),
        standardize=config.standardize,
        feature_names=train.feature_names,
        config=config.train_config(progress=progress),
    )
    model = result.model
    if config.tune_thresholds and validation is not None:
        source = str(validation.path)
        tune_thresholds(
            model, make_data(validation.inputs, validation.labels, model.tasks, source=source)
        )
    metrics: dict[str, Metrics] = {
        name: _metrics(model, others[name]) for name in ("validation", "test") if name in others
    }
    run = TrainRun(result, config.resolved(model.tasks), metrics, coverage)
    atomic_directory(Path(out_dir), lambda tmp: _write_run(tmp, run))
    return run


def _cell(key: str, value: MetricValue) -> str:
    if isinstance(value, Undefined):
        return f"undefined ({value.reason})"
    if key.startswith(("n_observed", "support")):
        return f"{value:.0f}"
    return f"{value:.4f}"


def _summary_keys(values: Mapping[str, MetricValue]) -> list[str]:
    """Keys without a per-label part; a macro is left out where the plain key is there."""
    return [
        key
        for key in values
        if "/" not in key
        and not key.endswith("_n_labels")
        and not (key.endswith("_macro") and key.removesuffix("_macro") in values)
    ]


def format_metrics(metrics: Mapping[str, Mapping[str, MetricValue]]) -> str:
    """Per task, its summary metrics (no per-label keys) as an aligned text table."""
    rows = [("task", "metric", "value")]
    for task, values in metrics.items():
        for i, key in enumerate(_summary_keys(values)):
            rows.append(("" if i else task, key, _cell(key, values[key])))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}".rstrip() for a, b, c in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def _open_run(run_dir: Path) -> tuple[RunConfig, MultiTaskModel]:
    model = load_model(run_dir)
    return load_config(Path(run_dir) / CONFIG_FILE), model


def _read_for_model(
    config: RunConfig, model: MultiTaskModel, path: Path, *, with_labels: bool
) -> Dataset:
    specs = [spec for spec in config.tasks if spec.name in model.task_names]
    targets = {spec.name: spec.source for spec in specs} if with_labels else {}
    part = read_dataset(path, feature_names=config.data.features, targets=targets)
    if tuple(part.inputs.shape[1:]) != model.input_shape:
        raise TaskmaskError(
            f"{path}: features of shape {_rows_of(part.inputs.shape[1:])}; the model takes "
            f"{_rows_of(model.input_shape)}"
        )
    return part


def write_csv_atomically(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` (no index) to ``path`` through a temporary file and `os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            frame.to_csv(file, index=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cmd_train(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    out = Path(args.out)
    if out.exists() and not args.overwrite and (not out.is_dir() or any(out.iterdir())):
        raise TaskmaskError(f"{out}: already exists; pass --overwrite to replace it")
    progress = False if args.quiet else config.training.progress
    run = train_run(config, out, progress=progress, report=lambda text: print(text + "\n"))
    for part, metrics in run.metrics.items():
        print(f"{part} metrics\n{format_metrics(metrics)}\n", file=sys.stdout)
    print(f"wrote {out}", file=sys.stdout)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    config, model = _open_run(args.run_dir)
    part = _read_for_model(config, model, Path(args.data), with_labels=True)
    metrics = _metrics(model, part)
    if args.json:
        jsonable = {task: to_jsonable(values) for task, values in metrics.items()}
        print(json.dumps(jsonable, indent=2), file=sys.stdout)
    else:
        print(format_metrics(metrics), file=sys.stdout)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    config, model = _open_run(args.run_dir)
    part = _read_for_model(config, model, Path(args.data), with_labels=False)
    frame = predictions_frame(predict(model, part.inputs))
    write_csv_atomically(frame, Path(args.output))
    print(f"wrote {len(frame)} rows x {frame.shape[1]} columns to {args.output}", file=sys.stdout)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from taskmask import demo

    progress = not args.quiet and sys.stderr.isatty()
    results = demo.run(Path(args.out), epochs=args.epochs, seed=args.seed, progress=progress)
    print(demo.format_table(results), file=sys.stdout)
    print(f"wrote {args.out}", file=sys.stdout)
    return 0


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskmask", description="Multi-task learning with missing labels."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser("train", help="train a model from a YAML run config")
    train.add_argument("--config", required=True, type=Path, help="the run config (YAML)")
    train.add_argument("--out", required=True, type=Path, help="the run directory to write")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run dir")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=_cmd_train)
    evaluate_ = commands.add_parser("evaluate", help="per-task metrics of a run's model")
    evaluate_.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    evaluate_.add_argument("--data", required=True, type=Path, help="CSV, Parquet or NPZ file")
    evaluate_.add_argument("--json", action="store_true", help="all metrics as JSON on stdout")
    evaluate_.set_defaults(handler=_cmd_evaluate)
    predict_ = commands.add_parser("predict", help="write predictions as CSV")
    predict_.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    predict_.add_argument("--data", required=True, type=Path, help="CSV, Parquet or NPZ file")
    predict_.add_argument("--output", required=True, type=Path, help="the CSV file to write")
    predict_.set_defaults(handler=_cmd_predict)
    demo = commands.add_parser("demo", help="seed 000 reproduced: three losses side by side")
    demo.add_argument("--out", required=True, type=Path, help="the directory to write")
    demo.add_argument("--epochs", type=_positive_int, default=None)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(handler=_cmd_demo)
    return parser


def _describe(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return format_validation_error(error, source="input")
    if isinstance(error, yaml.YAMLError):
        return f"not valid YAML: {yaml_problem(error)}"
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    return str(error)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (2 for bad input, with a message on stderr)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_BAD_INPUT
    try:
        code: int = args.handler(args)
    except BrokenPipeError:
        raise
    except (TaskmaskError, ValidationError, yaml.YAMLError, OSError) as error:
        print(f"taskmask {args.command}: error: {_describe(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return code


def run() -> None:
    """The console-script entry point; a closed pipe (``taskmask evaluate ... | head``) ends
    it quietly."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)
