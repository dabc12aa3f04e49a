"""`taskmask tune`: the search block, a real study in SQLite that resumes, validation data only."""

from __future__ import annotations

import copy
import sqlite3
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import taskmask.app.runs as runs
from taskmask import Task
from taskmask.api import fit
from taskmask.app.cli import main
from taskmask.app.config import load_config
from taskmask.app.search import ParamRange
from taskmask.app.tune import kept_epoch, load_tune, trial_values
from taskmask.app.tune_report import plot_study
from taskmask.app.tune_study import param_importances
from taskmask.errors import TaskmaskError
from taskmask.training import EarlyStopping

optuna = pytest.importorskip("optuna")

FEATURES = ["x0", "x1", "x2"]


def _table(n_rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, 3))
    a = (x[:, 0] + 0.3 * rng.normal(size=n_rows) > 0).astype(float)
    b = (x[:, 1] > 0).astype(float)
    a[rng.random(n_rows) < 0.3] = np.nan
    b[rng.random(n_rows) < 0.3] = np.nan
    return pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "a": a, "b": b})


def _run_config(**search: Any) -> dict[str, Any]:
    return {
        "data": {
            "train": "train.csv",
            "test": "test.csv",
            "validation_split": 0.25,
            "features": FEATURES,
        },
        "tasks": [{"name": "a", "kind": "binary"}, {"name": "b", "kind": "binary"}],
        "model": {"trunk": {"hidden": [8]}},
        "training": {"epochs": 2, "batch_size": 32, "lr": 0.01, "train_metrics": False},
        "search": {
            "monitor": "val/a/roc_auc",
            "n_trials": 3,
            "params": {"training.lr": {"type": "log_uniform", "low": 1e-3, "high": 0.1}},
            **search,
        },
    }


def _write(folder: Path, config: dict[str, Any]) -> Path:
    if not (folder / "train.csv").exists():
        _table(160, seed=0).to_csv(folder / "train.csv", index=False)
        _table(60, seed=1).to_csv(folder / "test.csv", index=False)
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _trials(db: Path) -> list[tuple[int, str]]:
    """(number, state) of every trial, read with sqlite3 from the study's own tables."""
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = connection.execute("SELECT number, state FROM trials ORDER BY number")
        return [(int(number), str(state)) for number, state in rows]


BAD_SEARCHES = [
    ({"params": {"training.lrr": {"type": "uniform", "low": 0, "high": 1}}}, "training.lrr"),
    ({"params": {"trainng.lr": {"type": "uniform", "low": 0, "high": 1}}}, "'trainng'"),
    ({"params": {"data.validation_split": {"type": "uniform", "low": 0.1, "high": 0.3}}}, "fixed"),
    ({"params": {"tasks.nope.weight": {"type": "uniform", "low": 0, "high": 1}}}, "'nope'"),
    ({"params": {"training.lr": {"type": "log_uniform", "low": 0, "high": 1}}}, "low > 0"),
    ({"params": {"training.epochs": {"type": "int", "low": 0, "high": 3}}}, "training.epochs"),
    ({"params": {"training.epochs": {"type": "int", "low": 1.5, "high": 3}}}, "whole"),
    ({"params": {"training.weighting": {"type": "categorical"}}}, "takes choices only"),
    (
        {"params": {"training.weighting": {"type": "categorical", "choices": ["static", "magic"]}}},
        "'magic'",
    ),
    ({"monitor": "test/a/roc_auc"}, "never a test metric"),
    ({"monitor": "val/zzz/roc_auc"}, "no task named 'zzz'"),
]


@pytest.mark.parametrize(("search", "expected"), BAD_SEARCHES)
def test_bad_search_blocks_exit_2_naming_the_path_before_any_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], search: dict[str, Any], expected: str
) -> None:
    path = _write(tmp_path, _run_config(**search))
    assert main(["tune", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert expected in error
    assert "search" in error and str(path) in error
    assert not (tmp_path / "out").exists()  # checked before the study is opened


def test_a_config_without_search_or_validation_data_is_refused(tmp_path: Path) -> None:
    config = _run_config()
    no_search = {k: v for k, v in config.items() if k != "search"}
    with pytest.raises(TaskmaskError, match="no search block"):
        load_tune(_write(tmp_path, no_search))
    no_validation = copy.deepcopy(config)
    del no_validation["data"]["validation_split"]
    no_validation["data"]["validation_split"] = 0.0
    with pytest.raises(TaskmaskError, match="needs validation data"):
        load_tune(_write(tmp_path, no_validation))


def test_without_optuna_the_error_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    path = _write(tmp_path, _run_config())
    assert main(["tune", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "pip install 'taskmask[tune]'" in capsys.readouterr().err


def test_a_study_needs_its_own_directory_and_a_real_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, _run_config())
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert main(["tune", "--config", str(path), "--out", str(taken)]) == 2
    assert "holds no study.db" in capsys.readouterr().err
    (taken / "study.db").write_text("not a database")
    assert main(["tune", "--config", str(path), "--out", str(taken)]) == 2
    error = capsys.readouterr().err
    assert "study.db: not a readable study database" in error


def test_categorical_choices_round_trip_through_their_labels(tmp_path: Path) -> None:
    spec = ParamRange(type="categorical", choices=([8], [8, 8], "x", None, 2.5))
    assert spec.labels() == {"[8]": [8], "[8, 8]": [8, 8], "x": "x", None: None, 2.5: 2.5}
    hidden = {"type": "categorical", "choices": [[4], [8, 8]]}
    tune = load_tune(_write(tmp_path, _run_config(params={"model.trunk.hidden": hidden})))
    assert trial_values(tune, {"model.trunk.hidden": "[8, 8]"}) == {"model.trunk.hidden": [8, 8]}


def test_the_objective_is_taken_at_the_epoch_whose_weights_are_kept() -> None:
    history = pd.DataFrame({"epoch": [1, 2, 3, 4, 5], "val/loss": [0.9, 0.5, 0.49, 0.6, 0.7]})
    assert kept_epoch(history, "val/loss", None) == (5, 0.7)
    stopping = EarlyStopping(monitor="val/loss", patience=2)
    assert kept_epoch(history, "val/loss", stopping) == (3, 0.49)
    coarse = EarlyStopping(monitor="val/loss", patience=2, min_delta=0.05)
    assert kept_epoch(history, "val/loss", coarse) == (2, 0.5)
    assert (
        kept_epoch(history, "val/loss", stopping.model_copy(update={"restore_best": False}))[0] == 5
    )


def test_on_epoch_end_gets_every_row_and_an_exception_ends_training() -> None:
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    labels = {"a": (x[:, 0] > 0).float().numpy()}
    tasks = [Task(name="a", kind="binary")]
    seen: list[dict[str, float]] = []
    result = fit(x, labels, tasks, epochs=3, batch_size=16, on_epoch_end=seen.append)
    assert seen == result.history.to_dict("records")

    def stop_after_two(row: dict[str, float]) -> None:
        if row["epoch"] == 2:
            raise KeyError("stop")

    with pytest.raises(KeyError, match="stop"):
        fit(x, labels, tasks, epochs=5, batch_size=16, on_epoch_end=stop_after_two)


def test_a_tiny_study_writes_every_output_from_validation_data_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hidden = {"type": "categorical", "choices": [[4], [8, 8]]}
    params = {
        "training.lr": {"type": "log_uniform", "low": 1e-3, "high": 0.1},
        "model.trunk.hidden": hidden,
        "tasks.a.pos_weight": {"type": "uniform", "low": 1.0, "high": 4.0},
        "training.weighting": {"type": "categorical", "choices": ["static", "uncertainty"]},
    }
    path = _write(tmp_path, _run_config(params=params))
    out = tmp_path / "out"
    read: list[Path] = []
    reader = runs.read_with_generated

    def spy(config: Any, file: Path, **kwargs: Any) -> Any:
        read.append(Path(file))
        return reader(config, file, **kwargs)

    monkeypatch.setattr(runs, "read_with_generated", spy)
    assert main(["tune", "--config", str(path), "--out", str(out)]) == 0
    assert read and tmp_path / "test.csv" not in read  # no trial reads the test file
    assert "ran 3 trials; the study holds 3 (3 complete)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "best.yaml",
        "study.db",
        "trials.csv",
        "tune.png",
    ]
    assert (out / "tune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    study = optuna.load_study(study_name="taskmask", storage=f"sqlite:///{out / 'study.db'}")
    table = pd.read_csv(out / "trials.csv")
    assert list(table["number"]) == [0, 1, 2] and set(table["state"]) == {"COMPLETE"}
    np.testing.assert_allclose(table["value"], [t.value for t in study.trials], rtol=1e-12)
    assert list(table.columns[6:]) == list(params)

    best = load_config(out / "best.yaml")
    chosen = study.best_trial.params
    assert best.search is None and best.data.test == (tmp_path / "test.csv").resolve()
    assert best.training.lr == chosen["training.lr"]
    assert list(best.model.trunk.hidden) == yaml.safe_load(chosen["model.trunk.hidden"])
    assert best.tasks[0].pos_weight == chosen["tasks.a.pos_weight"]
    assert best.training.weighting == chosen["training.weighting"]

    # best.yaml trains; the objective is the validation metric of that run's history
    run_dir = tmp_path / "best-run"
    assert main(["train", "--config", str(out / "best.yaml"), "--out", str(run_dir)]) == 0
    history = pd.read_csv(run_dir / "history.csv")
    assert history["val/a/roc_auc"].iloc[-1] == pytest.approx(study.best_value, abs=1e-12)
    assert (tmp_path / "test.csv") in read  # only now, by `taskmask train`


def test_a_study_resumes_from_its_sqlite_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, _run_config(n_trials=2))
    out = tmp_path / "out"
    db = out / "study.db"
    assert main(["tune", "--config", str(path), "--out", str(out)]) == 0
    assert _trials(db) == [(0, "COMPLETE"), (1, "COMPLETE")]
    assert main(["tune", "--config", str(path), "--out", str(out), "--n-trials", "3"]) == 0
    assert _trials(db) == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    assert "ran 1 trials; the study holds 3" in capsys.readouterr().out
    with sqlite3.connect(db) as connection:
        drawn = [v for (v,) in connection.execute("SELECT param_value FROM trial_params")]
    assert len(set(drawn)) == 3  # the resumed sampler draws a new value

    # a crash leaves a trial running: the next call marks it failed and draws anew
    storage = f"sqlite:///{db}"
    optuna.load_study(study_name="taskmask", storage=storage).ask()
    assert _trials(db)[-1] == (3, "RUNNING")
    assert main(["tune", "--config", str(path), "--out", str(out), "--n-trials", "4"]) == 0
    assert [state for _, state in _trials(db)] == ["COMPLETE"] * 3 + ["FAIL", "COMPLETE"]
    assert len(pd.read_csv(out / "trials.csv")) == 5

    other = _write(tmp_path, _run_config(n_trials=2, seed=1))
    assert main(["tune", "--config", str(other), "--out", str(out)]) == 2
    assert "started with another config (it differs in ['search'])" in capsys.readouterr().err


def test_median_pruning_stops_trials_worse_than_the_median(tmp_path: Path) -> None:
    search = {
        "monitor": "val/loss",
        "n_trials": 6,
        "pruning": {"startup_trials": 1},
        "params": {"training.lr": {"type": "categorical", "choices": [0.05, 1e-7]}},
    }
    config = _run_config(**search)
    config["training"]["epochs"] = 3
    out = tmp_path / "out"
    assert main(["tune", "--config", str(_write(tmp_path, config)), "--out", str(out)]) == 0
    study = optuna.load_study(study_name="taskmask", storage=f"sqlite:///{out / 'study.db'}")
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned, "a trial that barely learns is pruned"
    for trial in pruned:
        epoch = max(trial.intermediate_values)
        earlier = [
            t.intermediate_values[epoch]
            for t in study.trials
            if t.number < trial.number and t.state.name == "COMPLETE"
        ]
        assert epoch < 3 and trial.user_attrs["epochs"] == epoch
        assert trial.intermediate_values[epoch] > np.median(earlier)
    table = pd.read_csv(out / "trials.csv")
    assert table.loc[table["state"] == "PRUNED", "value"].isna().all()
    assert not [p for p in out.iterdir() if p.name.startswith(".trial-")]


def test_the_example_search_loads() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "configs"
    tune = load_tune(examples / "tune_quickstart.yaml")
    assert tune.search.maximize and tune.search.monitor == "val/toxic/roc_auc"
    assert "training.weighting" in tune.search.params


def test_a_monitor_missing_from_the_history_is_named_and_a_failed_study_takes_a_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    typo = _write(tmp_path, _run_config(n_trials=1, monitor="val/a/rocauc"))
    assert main(["tune", "--config", str(typo), "--out", str(out)]) == 2
    assert "'val/a/rocauc' is not in the history; did you mean 'val/a/roc_auc'?" in (
        capsys.readouterr().err
    )
    fixed = _write(tmp_path, _run_config(n_trials=1))
    assert main(["tune", "--config", str(fixed), "--out", str(out)]) == 0
    assert _trials(out / "study.db") == [(0, "FAIL"), (1, "COMPLETE")]


def test_importances_rank_the_parameter_the_objective_follows(tmp_path: Path) -> None:
    def objective(trial: Any) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        return 10 * x + 0.01 * trial.suggest_float("noise", 0.0, 1.0)

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=3)
    assert param_importances(study, optuna, seed=0) == {}  # too few trials
    study.optimize(objective, n_trials=5)
    found = param_importances(study, optuna, seed=0)
    assert list(found) == ["x", "noise"] and sum(found.values()) == pytest.approx(1.0)
    flat = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    flat.optimize(lambda trial: 0 * trial.suggest_float("x", 0, 1) + 1.0, n_trials=5)
    assert param_importances(flat, optuna, seed=0) == {}  # nothing to explain
    path = plot_study(study.trials, found, tmp_path / "tune.png", monitor="m", maximize=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
