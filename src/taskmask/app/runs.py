"""Training runs from a run config: read and check every file, train, write the run directory.

A run directory holds ``model.safetensors`` + ``model.json``, the resolved ``config.yaml``
(absolute data paths, label and class names filled in, only the settings that apply),
``metrics.json`` (`taskmask.app.run_report`), the history (``history_long.parquet`` and
``history_long.csv`` in long form, ``history.csv`` the small wide summary), ``plots/*.png``
(as the config's ``plots`` says), the training labels' coverage (``coverage.csv``,
``co_observed.csv``) and a model card,
``README.md``; ``docs/run_directory.md`` describes each. It is written atomically: nothing is
left behind when anything fails.

With ``checkpoints=True`` (as ``taskmask train`` runs) the run keeps a checkpoint of every
epoch in the sibling directory ``RUN_DIR.checkpoint`` (`checkpoint_dir`), with the run's
``config.yaml``, while it trains; ``resume=True`` continues from it after a crash, and it is
removed once the run directory is written. Under torchrun only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import taskmask._world as distributed
from taskmask._io import atomic_directory, clean_stale, directory_lock, write_atomically
from taskmask.api import FitResult, evaluate, fit, holdout, resolve_tasks
from taskmask.app.applicable import applicable
from taskmask.app.config import RunConfig, load_config
from taskmask.app.run_report import long_history, metrics_document, model_card, summary_history
from taskmask.app.trackers import report_run
from taskmask.data._coverage import Coverage, label_coverage, warn_no_positives
from taskmask.data._memory import MultiTaskData, make_data
from taskmask.data._streaming import ParquetSource
from taskmask.data.auxiliary import auxiliary_targets
from taskmask.data.tables import Dataset, read_dataset
from taskmask.errors import TaskmaskError
from taskmask.functional._metrics import MetricValue
from taskmask.model._model import MultiTaskModel
from taskmask.persistence import write_model_files
from taskmask.predict import tune_thresholds
from taskmask.tasks._task import Task
from taskmask.training import checkpoint

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
README_FILE = "README.md"
HISTORY_FILE = "history.csv"
LONG_HISTORY_FILE = "history_long.parquet"
LONG_HISTORY_CSV = "history_long.csv"
PLOTS_DIR = "plots"
COVERAGE_FILE = "coverage.csv"
CO_OBSERVED_FILE = "co_observed.csv"

CHECKPOINT_SUFFIX = ".checkpoint"

logger = logging.getLogger("taskmask")

Metrics = Mapping[str, Mapping[str, MetricValue]]  # a `taskmask.training.Evaluation`


def checkpoint_dir(run_dir: Path) -> Path:
    """Where run ``run_dir`` keeps its checkpoint while it trains: ``RUN_DIR.checkpoint``."""
    run_dir = Path(run_dir).resolve()
    return run_dir.with_name(run_dir.name + CHECKPOINT_SUFFIX)


def resumed_config(run_dir: Path, *, overrides: Sequence[str] = ()) -> RunConfig:
    """The config that the interrupted run ``run_dir`` was started with (and ``overrides``,
    ``KEY=VALUE``: only settings that may change on resume, such as ``training.epochs``)."""
    path = checkpoint_dir(run_dir) / CONFIG_FILE
    if not path.is_file():
        why = "it has finished" if (Path(run_dir) / CONFIG_FILE).is_file() else "none started"
        raise TaskmaskError(f"{path}: not found; there is no interrupted run to resume ({why})")
    return load_config(path, overrides=overrides)


@dataclass
class TrainRun:
    """What `train_run` produced: the fit, the resolved config, the metrics it wrote."""

    fit: FitResult
    config: RunConfig
    metrics: dict[str, Metrics]
    coverage: Coverage
    seconds: float = 0.0  # wall time, from reading the files to the end of training
    command: str | None = None


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
    if train:
        _require_labels(part.path, data.n_observed())
    return data


def _require_labels(path: Path, n_observed: dict[str, int]) -> None:
    """Every task needs at least one observed training label; name those without."""
    empty = [name for name, count in n_observed.items() if count == 0]
    if empty:
        raise TaskmaskError(
            f"{path}: tasks {empty} have no observed label at all; every task needs "
            "at least one (check the column names and the missing-value encoding)"
        )


def _split(part: Dataset, fraction: float, *, seed: int) -> tuple[Dataset, Dataset]:
    """The rows that ``fit(validation_split=fraction, seed=seed)`` trains on and holds out."""
    kept, held = holdout(len(part), fraction, seed=seed)
    return part.take(kept.numpy()), part.take(held.numpy())


def part_metrics(model: MultiTaskModel, part: Dataset) -> Metrics:
    """The `taskmask.api.evaluate` of one part (the CLI's ``evaluate``, ``metrics.json``)."""
    return evaluate(model, part.inputs, part.labels, source=str(part.path))


def _write_run(directory: Path, run: TrainRun, *, plots: bool) -> None:
    from taskmask.app.plots import plot_history

    write_model_files(run.fit.model, directory)
    run.coverage.labels.to_csv(directory / COVERAGE_FILE, index=False)
    run.coverage.co_observed.to_csv(directory / CO_OBSERVED_FILE)
    (directory / CONFIG_FILE).write_text(run.config.to_yaml(), encoding="utf-8")
    metrics = json.dumps(metrics_document(run.metrics), indent=2) + "\n"
    (directory / METRICS_FILE).write_text(metrics, encoding="utf-8")
    history = run.fit.history
    long = long_history(history)
    long.to_parquet(directory / LONG_HISTORY_FILE, index=False)
    long.to_csv(directory / LONG_HISTORY_CSV, index=False)
    summary_history(history).to_csv(directory / HISTORY_FILE, index=False)
    (directory / README_FILE).write_text(_card(run), encoding="utf-8")
    mode = run.config.plots if plots else "none"
    if mode != "none":
        best = run.fit.trainer.best_epoch
        plot_history(history, directory / PLOTS_DIR, best_epoch=best, mode=mode)


def _card(run: TrainRun) -> str:
    data = run.config.data
    split = (
        f"Validation: {data.split_fraction:.0%} of the training rows (split seed "
        f"{data.split_seed})."
        if data.validation is None and data.split_fraction
        else None
    )
    return model_card(
        tasks=[t for t in run.fit.model.tasks if not t.auxiliary],
        files={"train": data.train, "validation": data.validation, "test": data.test},
        metrics=run.metrics,
        history=run.fit.history,
        epochs=run.config.training.epochs,
        best_epoch=run.fit.trainer.best_epoch,
        seconds=run.seconds,
        command=run.command,
        split=split,
    )


def read_with_generated(
    config: RunConfig, path: Path, *, tasks: Sequence[str] | None = None, keep: Sequence[str] = ()
) -> Dataset:
    """A data file's features and the labels of ``tasks`` (default: every task of the config),
    generated targets included; the ``keep`` columns as stored (`Dataset.kept`)."""
    specs = [spec for spec in config.tasks if tasks is None or spec.name in tasks]
    targets = {spec.name: spec.source for spec in specs if spec.generator is None}
    part = read_dataset(
        path,
        feature_names=config.data.features,
        targets=targets,
        smiles=config.data.smiles,
        keep=keep,
    )
    for spec in specs:
        if spec.generator is not None:
            generated = auxiliary_targets(part.inputs, spec.generator, **spec.generator_options)
            part.labels[spec.name] = generated.numpy()
    return part


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """The lock of run ``run_dir`` and its checkpoint directory (`taskmask._io.directory_lock`
    on ``.RUN_DIR.lock``), taken by the process that writes (rank 0 under torchrun), which
    then removes what a killed writer of ``run_dir`` left beside it (`taskmask._io`)."""
    if not distributed.is_main():
        yield
        return
    with directory_lock(Path(run_dir), what="run directory"):
        clean_stale(Path(run_dir).resolve())
        yield


def train_run(
    config: RunConfig,
    out_dir: Path,
    *,
    progress: bool | None = None,
    report: Callable[[str], None] | None = None,
    plots: bool = True,
    checkpoints: bool = False,
    resume: bool = False,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    command: str | None = None,
) -> TrainRun:
    """Read every file, check every label, train, then write run directory ``out_dir``
    atomically (replacing it). Nothing is written when anything fails before training.
    ``report`` receives the training data's label coverage before training starts; rows
    that could not be featurised are a warning of the ``taskmask`` logger.
    ``checkpoints``: keep a checkpoint per epoch in `checkpoint_dir` (``out_dir``); ``resume``:
    continue from the checkpoint there if an epoch was saved, else start over. ``command``
    (the command line that started the run) goes into the model card. ``on_epoch_end``
    receives each epoch's history row (`taskmask.training.Trainer.fit`). With
    ``data.stream`` the training data is streamed (`taskmask.data`), never read whole.
    A run holds `run_lock` (``out_dir``) throughout: a second run on it fails at once."""
    with run_lock(out_dir):
        return _train_run(
            config,
            out_dir,
            progress=progress,
            report=report,
            plots=plots,
            checkpoints=checkpoints,
            resume=resume,
            on_epoch_end=on_epoch_end,
            command=command,
        )


def _train_run(
    config: RunConfig,
    out_dir: Path,
    *,
    progress: bool | None,
    report: Callable[[str], None] | None,
    plots: bool,
    checkpoints: bool,
    resume: bool,
    on_epoch_end: Callable[[dict[str, float]], None] | None,
    command: str | None,
) -> TrainRun:
    if checkpoints and config.training.checkpoint_dir is not None:
        raise TaskmaskError(
            f"training.checkpoint_dir: a run keeps its checkpoint in {checkpoint_dir(out_dir)} "
            "beside its run directory; leave training.checkpoint_dir out of the config"
        )
    directory = checkpoint_dir(out_dir) if checkpoints else config.training.checkpoint_dir
    start = time.perf_counter()
    data = config.data
    streamed = _stream_source(config) if data.stream else None
    train = read_with_generated(config, data.train) if streamed is None else None
    others = {
        name: read_with_generated(config, path)
        for name, path in (("validation", data.validation), ("test", data.test))
        if path is not None
    }
    if distributed.is_main():
        for part in (train, *others.values()):
            if part is not None and part.left_out:
                logger.warning("%s: %s", part.path, left_out_report(part))
    if streamed is not None:
        tasks, shape = streamed.tasks, streamed.input_shape
    else:
        assert train is not None
        tasks, shape = _resolve_tasks(config, train), train.inputs.shape[1:]
    for part in others.values():
        _check_part(part, tasks, shape, train=False)
    if streamed is not None:
        coverage = _streamed_coverage(streamed, standardize=bool(config.standardize))
    else:
        assert train is not None
        coverage = label_coverage(_check_part(train, tasks, shape, train=True), tasks)
    if report is not None and distributed.is_main():
        report(coverage.to_text())
    if distributed.is_main():
        warn_no_positives(coverage, tasks, source=config.data.train)
    if train is not None and "validation" not in others and data.split_fraction > 0:
        seed = config.training.seed if data.split_seed is None else data.split_seed
        train, others["validation"] = _split(train, data.split_fraction, seed=seed)
    validation = others.get("validation")
    # under torchrun, every rank has checked the files and directories before rank 0 writes
    distributed.setup(config.training.device).barrier()
    resume = resume and directory is not None and checkpoint.exists(directory)
    if checkpoints and directory is not None and distributed.is_main():
        if not resume:
            shutil.rmtree(directory, ignore_errors=True)  # a stale one is no part of this run
        directory.mkdir(parents=True, exist_ok=True)
        write_atomically(
            directory / CONFIG_FILE, lambda tmp: tmp.write_text(config.to_yaml(), encoding="utf-8")
        )
    settings: dict[str, Any] = {
        "trunk": config.model.trunk,
        "validation": None if validation is None else (validation.inputs, validation.labels),
        "standardize": config.standardize,
        "config": config.train_config(progress=progress).model_copy(
            update={"checkpoint_dir": directory}
        ),
        "resume": resume,
        "on_epoch_end": on_epoch_end,
    }
    if streamed is not None:
        result = fit(streamed, **settings)
    else:
        assert train is not None
        result = fit(
            train.inputs, train.labels, tasks, feature_names=train.feature_names, **settings
        )
    model = result.model
    if config.threshold_objective is not None and validation is not None:
        source = str(validation.path)
        tune_thresholds(
            model,
            make_data(validation.inputs, validation.labels, model.tasks, source=source),
            objective=config.threshold_objective,
        )
    metrics: dict[str, Metrics] = {
        name: part_metrics(model, others[name]) for name in ("validation", "test") if name in others
    }
    seconds = time.perf_counter() - start
    run = TrainRun(result, config.resolved(model.tasks), metrics, coverage, seconds, command)
    if distributed.is_main():
        atomic_directory(Path(out_dir), lambda tmp: _write_run(tmp, run, plots=plots))
        if checkpoints and directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        report_run(
            config.trackers,
            config=applicable(run.config.model_dump(mode="json")),
            config_yaml=run.config.to_yaml(),
            history=result.history,
            metrics=metrics,
            run_dir=Path(out_dir),
        )  # after the run is complete: a tracker that fails costs no training
    return run


def _resolve_tasks(config: RunConfig, train: Dataset) -> tuple[Task, ...]:
    """`resolve_tasks` on the training file; its errors name the file."""
    try:
        return resolve_tasks(config.task_list(), train.labels)
    except TaskmaskError as error:
        if str(train.path) in str(error):
            raise
        raise TaskmaskError(f"{train.path}: {error}") from None


def _stream_source(config: RunConfig) -> ParquetSource:
    """The training file(s) of a ``stream: true`` config, opened and checked, not read."""
    data = config.data
    options = {} if data.shuffle_buffer is None else {"shuffle_buffer": data.shuffle_buffer}
    return ParquetSource(
        data.train,
        features=data.features,
        tasks=config.task_list(),
        targets={spec.name: spec.source for spec in config.tasks},
        **options,
    )


def _streamed_coverage(source: ParquetSource, *, standardize: bool) -> Coverage:
    """The coverage of the streamed training labels, every task with a label. With
    ``standardize`` the features' moments are taken in the same pass (`fit` reuses them)."""
    if standardize:
        source.standardization()
    _require_labels(source.path, source.n_observed())
    return source.coverage()


def left_out_report(part: Dataset) -> str:
    """The rows of ``part``'s file that could not be featurised, one line each (first 10)."""
    from taskmask.data.chem import failure_report

    return failure_report(part.left_out)
