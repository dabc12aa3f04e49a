"""`taskmask tune`: a hyperparameter search with Optuna over a run config's ``search:`` block.

Each trial trains the run config with values drawn for ``search.params``
(`taskmask.app.search`) and is judged by ``search.monitor`` on the validation data alone: a
trial never reads the test file. Its objective is the monitor's value at the epoch whose
weights the run keeps (the last one, or the one early stopping restores); the value after
every epoch goes to a median pruner. The TPE sampler is seeded with ``search.seed`` plus the
number of trials the study already holds, so a resumed study draws new values, and the same
ones on every rerun.

The directory OUT holds ``study.db``, the study in SQLite: running again on OUT resumes it
(``n_trials`` counts the trials it holds; a trial that a crash left running is marked failed
and drawn anew). Written after each call: ``best.yaml`` (the run config with the best
trial's values, test file included, for ``taskmask train --config``), ``trials.csv`` (one row
per trial: number, state, value, epochs trained, epoch kept, seconds, one column per
parameter) and ``tune.png`` (the objective against trials and against the most important
parameters). One process works on a study at a time. Optuna is the ``tune`` extra.
"""

from __future__ import annotations

import copy
import difflib
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml
from pydantic import ValidationError
from torch import nn

from taskmask._io import write_atomically
from taskmask.app.config import RunConfig, format_validation_error, load_config, read_yaml
from taskmask.app.overrides import set_dotted as set_path
from taskmask.app.run_files import write_csv_atomically
from taskmask.app.runs import train_run
from taskmask.app.search import ParamRange, SearchConfig
from taskmask.app.tune_report import plot_study, trial_line, trials_table
from taskmask.app.tune_study import import_optuna, open_study, optuna_quiet, param_importances
from taskmask.errors import TaskmaskError
from taskmask.training._early_stopping import EarlyStopping, Stopper

if TYPE_CHECKING:
    import optuna

STUDY_FILE = "study.db"
BEST_FILE = "best.yaml"
TRIALS_FILE = "trials.csv"
PLOT_FILE = "tune.png"
FIXED_SECTIONS = ("data", "search")  # a trial never changes these
TOP_PARAMS = 3  # parameters plotted against the objective


@dataclass
class Tune:
    """A search: the run config, the mapping it was read from (trials set values in a copy),
    and its file (relative data paths are relative to its folder)."""

    config: RunConfig
    raw: dict[str, Any]
    source: Path

    @property
    def search(self) -> SearchConfig:
        assert self.config.search is not None, "load_tune checks that there is one"
        return self.config.search


def load_tune(path: str | Path) -> Tune:
    """Read a run config with a ``search:`` block and check every searched path and range end
    (or choice) before any trial runs: each problem is a `TaskmaskError` naming the path."""
    path = Path(path)
    config = load_config(path)
    if config.search is None:
        raise TaskmaskError(
            f"{path}: no search block; taskmask tune searches the fields that search.params "
            "names (docs/tune.md)"
        )
    tune = Tune(config, read_yaml(path), path)
    _check_monitor(tune)
    for dotted, spec in tune.search.params.items():
        head = dotted.split(".")[0]
        if head in FIXED_SECTIONS:
            raise TaskmaskError(
                f"{path}: search.params.{dotted}: {head} is fixed during a search (every "
                "trial is judged on the same validation data)"
            )
        if head not in RunConfig.model_fields:
            allowed = [f for f in RunConfig.model_fields if f not in FIXED_SECTIONS]
            raise TaskmaskError(
                f"{path}: search.params.{dotted}: unknown config field {head!r}; a searched "
                f"path starts with one of {allowed}"
            )
        for value in spec.candidates():
            trial_config(tune, {dotted: value}, where=f"search.params.{dotted} = {value!r}")
    return tune


def _check_monitor(tune: Tune) -> None:
    monitor, data = tune.search.monitor, tune.config.data
    names = [spec.name for spec in tune.config.tasks]
    parts = monitor.split("/")
    if len(parts) > 2 and parts[1] not in names:
        raise TaskmaskError(
            f"{tune.source}: search.monitor {monitor!r}: no task named {parts[1]!r}; "
            f"the tasks are {names}"
        )
    if data.validation is None and not data.split_fraction:
        raise TaskmaskError(
            f"{tune.source}: search.monitor {monitor!r} needs validation data: set "
            "data.validation or data.validation_split"
        )


def trial_config(tune: Tune, values: Mapping[str, Any], *, where: str) -> RunConfig:
    """The run config with ``values`` set at their dotted paths, without its search block,
    data paths made absolute; `TaskmaskError` naming ``where`` if it is not valid."""
    raw = copy.deepcopy(tune.raw)
    raw.pop("search", None)
    for dotted, value in values.items():
        set_path(raw, dotted, value, f"{tune.source}: {where}")
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as error:
        source = f"{tune.source} ({where})"
        raise TaskmaskError(format_validation_error(error, source=source, raw=raw)) from None
    return config.model_copy(update={"data": config.data.resolved(tune.source.parent)})


def _without_test(config: RunConfig) -> RunConfig:
    """What a trial trains: no test file (never read), no checkpoint directory of its own."""
    data = config.data.model_copy(update={"test": None})
    training = config.training.model_copy(update={"checkpoint_dir": None})
    return config.model_copy(update={"data": data, "training": training})


def suggest(trial: optuna.Trial, dotted: str, spec: ParamRange) -> Any:
    """Draw the value of one searched path."""
    if spec.choices is not None:
        labels = spec.labels()
        return labels[trial.suggest_categorical(dotted, list(labels))]
    assert spec.low is not None and spec.high is not None, "ParamRange checks the ends"
    if spec.type == "int":
        return trial.suggest_int(dotted, int(spec.low), int(spec.high), step=int(spec.step or 1))
    log = spec.type == "log_uniform"
    return trial.suggest_float(dotted, spec.low, spec.high, log=log, step=spec.step)


def trial_values(tune: Tune, params: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's config values from the parameters Optuna stored (categorical labels mapped
    back to their choices)."""
    values = {}
    for dotted, spec in tune.search.params.items():
        value = params[dotted]
        values[dotted] = spec.labels()[value] if spec.choices else value
    return values


def kept_epoch(
    history: pd.DataFrame, monitor: str, early_stopping: EarlyStopping | None
) -> tuple[int, float]:
    """The epoch whose weights a run keeps and ``monitor`` there: the last epoch, or with
    ``early_stopping.restore_best`` the epoch it restored (the trainer's `Stopper` replayed)."""
    rows = history.to_dict("records")
    kept = rows[-1]
    if early_stopping is not None and early_stopping.restore_best:
        stopper = Stopper(early_stopping, has_validation=True)
        for row in rows:
            stopper.update(row, nn.Identity())  # which epoch is best needs no weights
            if stopper.waited == 0:
                kept = row
    return int(kept["epoch"]), float(kept[monitor])


def _monitored(row: Mapping[str, float], tune: Tune) -> float:
    monitor = tune.search.monitor
    if monitor not in row:
        keys = [key for key in row if key.startswith("val/")]
        close = difflib.get_close_matches(monitor, keys, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        summaries = sorted(key for key in keys if key.count("/") <= 2)  # no per-label keys
        raise TaskmaskError(
            f"{tune.source}: search.monitor {monitor!r} is not in the history; {hint}"
            f"validation keys: {', '.join(summaries)}"
        )
    return row[monitor]


def make_objective(tune: Tune, out: Path, optuna_: ModuleType) -> Callable[[optuna.Trial], float]:
    """Optuna's objective: train one trial's config in a temporary run directory under
    ``out``, report every epoch to the pruner, return `kept_epoch`'s value."""
    search = tune.search

    def objective(trial: optuna.Trial) -> float:
        values = {dotted: suggest(trial, dotted, spec) for dotted, spec in search.params.items()}
        config = _without_test(trial_config(tune, values, where=f"trial {trial.number}"))

        def on_epoch_end(row: dict[str, float]) -> None:
            epoch, value = int(row["epoch"]), _monitored(row, tune)
            trial.report(value, epoch)
            if trial.should_prune():
                trial.set_user_attr("epochs", epoch)
                raise optuna_.TrialPruned(f"epoch {epoch}: {search.monitor} = {value:.4g}")

        with tempfile.TemporaryDirectory(prefix=".trial-", dir=out) as tmp:
            run = train_run(
                config, Path(tmp) / "run", progress=False, plots=False, on_epoch_end=on_epoch_end
            )
        history = run.fit.history
        epoch, value = kept_epoch(history, search.monitor, config.training.early_stopping)
        trial.set_user_attr("epochs", len(history))
        trial.set_user_attr("epoch", epoch)
        return value

    return objective


def _identity(tune: Tune) -> dict[str, Any]:
    """What makes a study the same study: the config and search, less n_trials and timeout."""
    config = tune.config.model_dump(mode="json", exclude={"search"})
    return {
        **config,
        "search": tune.search.model_dump(mode="json", exclude={"n_trials", "timeout"}),
    }


@dataclass
class TuneResult:
    """A study after `run_tune`: the Optuna study, its monitor, the best trial's config (None
    while no trial has completed) and how many trials this call ran."""

    study: optuna.Study
    monitor: str
    best: RunConfig | None
    ran: int


def run_tune(
    path: str | Path,
    out: str | Path,
    *,
    n_trials: int | None = None,
    report: Callable[[str], None] | None = None,
) -> TuneResult:
    """Run (or resume) the study of the run config at ``path`` in directory ``out`` until it
    holds ``n_trials`` (default ``search.n_trials``) completed or pruned trials, or for
    ``search.timeout`` seconds; then write the outputs (see the module docstring)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise TaskmaskError("taskmask tune runs as one process; start it without torchrun")
    tune = load_tune(path)
    optuna_ = import_optuna()
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not (out / STUDY_FILE).is_file():
        raise TaskmaskError(f"{out}: holds no {STUDY_FILE}; tune into a new or empty directory")
    out.mkdir(parents=True, exist_ok=True)
    states = optuna_.trial.TrialState
    with optuna_quiet(optuna_):
        study = open_study(out / STUDY_FILE, tune.search, _identity(tune), optuna_)
        done = len(study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED)))
        left = (n_trials or tune.search.n_trials) - done
        before = len(study.trials)
        if left > 0:
            monitor = tune.search.monitor
            callbacks = [] if report is None else [lambda _, t: report(trial_line(t, monitor))]
            study.optimize(
                make_objective(tune, out, optuna_),
                n_trials=left,
                timeout=tune.search.timeout,
                callbacks=callbacks,
            )
        best = write_outputs(study, tune, out, optuna_)
    return TuneResult(study, tune.search.monitor, best, len(study.trials) - before)


def write_outputs(
    study: optuna.Study, tune: Tune, out: Path, optuna_: ModuleType
) -> RunConfig | None:
    """``trials.csv``, ``tune.png`` and, once a trial has completed, ``best.yaml``."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    params = list(tune.search.params)
    write_csv_atomically(trials_table(trials, params), out / TRIALS_FILE)
    importances = {}
    if len(params) > 1:
        importances = param_importances(study, optuna_, seed=tune.search.seed)
    shown = list(importances)[:TOP_PARAMS] if importances else params[:TOP_PARAMS]
    log_scale = {p for p, spec in tune.search.params.items() if spec.type == "log_uniform"}
    plot_study(
        trials,
        {p: importances.get(p) for p in shown},
        out / PLOT_FILE,
        monitor=tune.search.monitor,
        maximize=tune.search.maximize,
        log_scale=log_scale,
    )
    if not complete:
        return None
    best = study.best_trial
    config = trial_config(tune, trial_values(tune, best.params), where=f"trial {best.number}")
    header = (
        f"# taskmask tune: trial {best.number} of {out / STUDY_FILE}, "
        f"{tune.search.monitor} = {best.value:.6g}\n"
        f"# taskmask train --config {out / BEST_FILE} --out RUN_DIR\n"
    )
    body = yaml.safe_dump(config.model_dump(mode="json", exclude={"search"}), sort_keys=False)
    write_atomically(out / BEST_FILE, lambda tmp: tmp.write_text(header + body, encoding="utf-8"))
    return config


def study_summary(result: TuneResult) -> str:
    """How many trials ran and the study holds, by state, and the best trial."""
    study = result.study
    states = pd.Series([t.state.name.lower() for t in study.trials]).value_counts()
    counts = ", ".join(f"{n} {state}" for state, n in states.items())
    lines = [f"ran {result.ran} trials; the study holds {len(study.trials)} ({counts})"]
    if result.best is not None:
        lines.append(f"best: {trial_line(study.best_trial, result.monitor)}")
    return "\n".join(lines)
