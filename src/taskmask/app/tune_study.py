"""The Optuna side of `taskmask tune`: Optuna imported lazily (the ``tune`` extra), the study
in SQLite opened or resumed, parameter importances."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from taskmask.app.search import SearchConfig
from taskmask.errors import TaskmaskError

if TYPE_CHECKING:
    import optuna

STUDY_NAME = "taskmask"
MIN_IMPORTANCE_TRIALS = 4  # completed trials before parameter importances are computed


def import_optuna() -> ModuleType:
    """The ``optuna`` module; a `TaskmaskError` naming the extra when it is not installed."""
    try:
        import optuna
    except ImportError as error:
        raise TaskmaskError(
            f"taskmask tune needs Optuna ({error}); install the extra: pip install 'taskmask[tune]'"
        ) from None
    return optuna


@contextmanager
def optuna_quiet(optuna_: ModuleType) -> Iterator[None]:
    """Optuna's own log lines off but errors (``report`` says what each trial did, and an
    error that ends a trial ends the call with its message)."""
    before = optuna_.logging.get_verbosity()
    optuna_.logging.set_verbosity(optuna_.logging.ERROR)
    try:
        yield
    finally:
        optuna_.logging.set_verbosity(before)


def open_study(
    path: Path, search: SearchConfig, identity: dict[str, Any], optuna_: ModuleType
) -> optuna.Study:
    """Create the study in SQLite file ``path``, or load it to resume: the same config
    (``identity``) it was started with, its interrupted trials marked failed, its sampler
    seeded with ``search.seed`` plus the number of trials it holds."""
    path = path.resolve()
    pruner = (
        optuna_.pruners.NopPruner()
        if search.pruning is None
        else optuna_.pruners.MedianPruner(
            n_startup_trials=search.pruning.startup_trials,
            n_warmup_steps=search.pruning.warmup_epochs + 1,  # epochs count from 1
        )
    )
    from sqlalchemy.exc import SQLAlchemyError  # an Optuna dependency, as lazy as Optuna

    try:
        study = optuna_.create_study(
            storage=f"sqlite:///{path}",
            study_name=STUDY_NAME,
            load_if_exists=True,
            direction="maximize" if search.maximize else "minimize",
            pruner=pruner,
        )
    except SQLAlchemyError as error:
        raise TaskmaskError(
            f"{path}: not a readable study database ({str(error).splitlines()[0]})"
        ) from None
    _check_same_study(study, identity, path)
    running = study.get_trials(deepcopy=False, states=(optuna_.trial.TrialState.RUNNING,))
    for trial in running:  # one process per study: a running trial is a crashed one
        study.tell(trial.number, state=optuna_.trial.TrialState.FAIL)
    study.sampler = optuna_.samplers.TPESampler(seed=search.seed + len(study.trials))
    return study


def _check_same_study(study: optuna.Study, identity: dict[str, Any], path: Path) -> None:
    stored = study.user_attrs.get("config")
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    if not finished:  # a new study, or one whose trials all failed: it takes this config
        study.set_user_attr("config", json.dumps(identity, sort_keys=True))
        return
    before = json.loads(stored) if isinstance(stored, str) else {}
    changed = [key for key in identity if before.get(key) != identity[key]]
    if changed:
        raise TaskmaskError(
            f"{path}: this study was started with another config (it differs in {changed}); "
            "tune into a new --out, or go back to that config"
        )


def param_importances(study: optuna.Study, optuna_: ModuleType, *, seed: int) -> dict[str, float]:
    """fANOVA importances (seeded), most important first; none before `MIN_IMPORTANCE_TRIALS`
    completed trials or when the objective does not vary with the parameters."""
    if len(study.get_trials(deepcopy=False, states=(optuna_.trial.TrialState.COMPLETE,))) < (
        MIN_IMPORTANCE_TRIALS
    ):
        return {}
    evaluator = optuna_.importance.FanovaImportanceEvaluator(seed=seed)
    try:
        found = optuna_.importance.get_param_importances(study, evaluator=evaluator)
    except RuntimeError:  # fANOVA's "zero total variance in all trees"
        return {}
    return {name: float(value) for name, value in found.items()}
