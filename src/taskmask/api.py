"""The Python API in one call each: `fit`, `evaluate` (predict, save and load live beside)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
import torch
from pydantic import ValidationError
from torch import nn

from taskmask.data._memory import MultiTaskData, make_data
from taskmask.data._rows import SparseRows
from taskmask.data._stream_stats import LabelStats, balanced_tasks, initial_biases, label_stats
from taskmask.data._streaming import ParquetSource
from taskmask.errors import TaskmaskError
from taskmask.model._model import MultiTaskModel
from taskmask.model._trunks import MLPConfig, TrunkConfig, build_trunk
from taskmask.tasks._masking import resolve_task
from taskmask.tasks._task import Task, check_unique_names
from taskmask.training._evaluate import Evaluation
from taskmask.training._evaluate import evaluate as training_evaluate
from taskmask.training._trainer import LossFn, TrainConfig, Trainer
from taskmask.weighting import Weighting


@dataclass
class FitResult:
    """A trained model, its per-epoch history, and the trainer that produced them."""

    model: MultiTaskModel
    history: pd.DataFrame
    trainer: Trainer


def resolve_tasks(tasks: Sequence[Task], labels: Mapping[str, Any]) -> tuple[Task, ...]:
    """Fill in class names and label counts from the training labels."""
    check_unique_names(tasks)
    missing = [t.name for t in tasks if t.name not in labels]
    if missing:
        raise TaskmaskError(f"no training labels given for tasks {missing}")
    return tuple(resolve_task(task, labels[task.name]) for task in tasks)


def balance_tasks(tasks: Sequence[Task], train: MultiTaskData) -> tuple[Task, ...]:
    """Replace ``pos_weight="balanced"`` by negatives / positives per label on ``train``."""
    return balanced_tasks(tasks, label_stats(tasks, train.labels, len(train)))


def holdout(n_rows: int, fraction: float, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The row indices ``(kept, held)`` of the validation split: ``fit(validation_split=
    fraction, seed=seed)`` trains on ``kept`` and validates on ``held`` (the one split; runs
    hold out the same rows through it)."""
    if not 0.0 < fraction < 1.0:
        raise TaskmaskError(f"validation fraction must be in (0, 1), got {fraction}")
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed))
    n_held = max(1, round(n_rows * fraction))
    return order[n_held:], order[:n_held]


def standardization(
    inputs: torch.Tensor, *, per: Literal["feature", "channel"] = "feature"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of ``(N, ...)`` inputs, each of shape ``(1, ...)`` as
    `MultiTaskModel`'s ``input_mean`` / ``input_scale`` expect; a constant one gets scale 1.

    ``per="feature"``: over rows, for each input position. ``per="channel"``: over rows and
    positions, for each channel of ``(N, C, ...)`` images or series (zero-padded series and
    image pixels need this)."""
    dims = [0]
    if per == "channel":
        if inputs.ndim < 3:
            raise TaskmaskError(
                f"per-channel statistics need (N, channels, ...) inputs, got {tuple(inputs.shape)}"
            )
        dims = [0, *range(2, inputs.ndim)]
    mean = inputs.mean(dim=dims, keepdim=True, dtype=torch.float64)
    std = inputs.double().std(dim=dims, keepdim=True, correction=0)
    scale = torch.where(std > 0, std, torch.ones_like(std))
    shape = (1, *inputs.shape[1:])
    return mean.float().expand(shape).contiguous(), scale.float().expand(shape).contiguous()


@torch.no_grad()
def _start_biases(model: MultiTaskModel, stats: LabelStats) -> None:
    """Start each head whose kind has an ``initial_bias`` there (a regression head at its
    observed training mean, a count head at the log of its mean count), so that targets far
    from the initial outputs (ages, prices) need not first be reached by the optimiser."""
    biases = initial_biases(model.tasks, stats)
    for task in model.tasks:
        if task.name not in biases:
            continue
        head = model.heads[task.name]
        if not isinstance(head, nn.Linear):
            raise TaskmaskError(
                f"task {task.name!r}: kind {task.kind!r} sets an initial bias, which needs a "
                f"linear head, not {type(head).__name__}"
            )
        head.bias.copy_(biases[task.name])


Prepared = tuple[
    MultiTaskData | ParquetSource,
    MultiTaskData | None,
    tuple[Task, ...],
    tuple[torch.Tensor, torch.Tensor] | tuple[None, None],
    Sequence[str] | None,
    LabelStats,
]
"""Training data, validation data, resolved tasks, input mean and scale, feature names, and
the training labels' statistics (the one pass that balancing and starting biases read)."""


def _in_memory(
    inputs: Any,
    labels: Mapping[str, Any] | None,
    tasks: Sequence[Task] | None,
    validation: tuple[Any, Mapping[str, Any]] | None,
    standardize: bool | Literal["feature", "channel"],
    feature_names: Sequence[str] | None,
    config: TrainConfig,
) -> Prepared:
    if labels is None or tasks is None:
        raise TaskmaskError("fit needs labels and tasks, unless inputs is a ParquetSource")
    if isinstance(inputs, pd.DataFrame) and feature_names is None:
        feature_names = [str(c) for c in inputs.columns]
    tasks = resolve_tasks(tasks, labels)
    train = make_data(inputs, labels, tasks, source="training data", feature_names=feature_names)
    if validation is not None:
        val: MultiTaskData | None = make_data(
            *validation, tasks, source="validation data", feature_names=feature_names
        )
    elif config.validation_split > 0:
        kept, held = holdout(len(train), config.validation_split, seed=config.seed)
        train, val = train.subset(kept), train.subset(held)
    else:
        val = None
    stats = label_stats(tasks, train.labels, len(train))
    tasks = balanced_tasks(tasks, stats)
    return train, val, tasks, _scaling(train.inputs, standardize), feature_names, stats


def _scaling(
    inputs: torch.Tensor, standardize: bool | Literal["feature", "channel"]
) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
    """The input mean and scale of in-memory training inputs, dense or sparse (`SparseRows`,
    from its feature moments: never densified whole)."""
    per = "feature" if standardize is True else standardize
    if not per:
        return None, None
    if isinstance(inputs, SparseRows):
        if per == "channel":
            raise TaskmaskError("standardize='channel' needs (N, C, ...) inputs, not sparse ones")
        return inputs.moments().standardization()
    return standardization(inputs, per=per)


def _streamed(
    source: ParquetSource,
    labels: Mapping[str, Any] | None,
    tasks: Sequence[Task] | None,
    validation: tuple[Any, Mapping[str, Any]] | ParquetSource | None,
    standardize: bool | Literal["feature", "channel"],
    config: TrainConfig,
) -> Prepared:
    if labels is not None or tasks is not None:
        raise TaskmaskError("a ParquetSource holds its tasks and labels: leave labels, tasks out")
    if config.validation_split > 0:
        raise TaskmaskError(
            "validation_split needs in-memory training data; give validation data instead"
        )
    if standardize == "channel":
        raise TaskmaskError("standardize='channel' needs (N, C, ...) inputs; Parquet has columns")
    names = source.features
    if isinstance(validation, ParquetSource):
        val: MultiTaskData | None = validation.read(tasks=source.tasks)
    elif validation is not None:
        val = make_data(*validation, source.tasks, source="validation data", feature_names=names)
    else:
        val = None
    scaling = source.standardization() if standardize else (None, None)
    stats = source.label_stats()
    return source, val, balanced_tasks(source.tasks, stats), scaling, names, stats


def fit(
    inputs: Any,
    labels: Mapping[str, Any] | None = None,
    tasks: Sequence[Task] | None = None,
    *,
    trunk: TrunkConfig | nn.Module | None = None,
    validation: tuple[Any, Mapping[str, Any]] | ParquetSource | None = None,
    standardize: bool | Literal["feature", "channel"] = True,
    feature_names: Sequence[str] | None = None,
    config: TrainConfig | None = None,
    weighting: Weighting | str | None = None,
    loss_fns: Mapping[str, LossFn] | None = None,
    resume: bool = False,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    **settings: Any,
) -> FitResult:
    """Train a multi-task model on ``inputs`` ``(N, ...)`` and per-task raw ``labels``.

    Missing labels are NaN / None / empty / the task's sentinel (see `taskmask.tasks`).
    ``trunk`` is a trunk config (`MLPConfig`, the default; `CNN1DConfig`, `CNN2DConfig`) or any
    ``nn.Module`` mapping ``(N, *input_shape)`` to features; a config is built under ``seed``,
    a module keeps the weights it was built with (call ``torch.manual_seed`` before building
    it for a repeatable run). ``standardize``: True or
    ``"feature"`` scales each input position, ``"channel"`` each channel (`standardization`).
    ``weighting`` is a registered name (see `taskmask.weighting.WEIGHTINGS`; options go in
    ``weighting_options``) or a `Weighting` instance. ``settings`` override fields of
    ``config`` (e.g. ``epochs=20, lr=1e-2``). Validation data is ``validation`` or a seeded
    ``validation_split`` of the training rows. With ``checkpoint_dir=...`` a checkpoint is
    written every epoch, and ``resume=True`` continues from it (see `Trainer.fit`).
    ``on_epoch_end`` receives each epoch's history row (see `Trainer.fit`).

    ``inputs`` may be a scipy sparse matrix: it stays sparse, each batch densifies its rows.
    ``inputs`` may instead be a `taskmask.data.ParquetSource`, streamed batch by batch
    (``docs/streaming.md``): it holds the tasks and their label columns, so ``labels`` and
    ``tasks`` are left out; standardisation, ``pos_weight="balanced"`` and the heads'
    starting biases come from one pass over the files; validation data (in memory, or a small
    ``ParquetSource`` read whole) must be given, as there is no ``validation_split``.
    """
    if isinstance(weighting, str):
        settings = {**settings, "weighting": weighting}
        weighting = None
    try:
        config = TrainConfig.model_validate({**(config or TrainConfig()).model_dump(), **settings})
    except ValidationError as error:
        raise TaskmaskError(f"invalid training settings:\n{error}") from None
    if isinstance(inputs, ParquetSource):
        prepared = _streamed(inputs, labels, tasks, validation, standardize, config)
    elif isinstance(validation, ParquetSource):
        raise TaskmaskError("a ParquetSource as validation needs one as training data")
    else:
        prepared = _in_memory(inputs, labels, tasks, validation, standardize, feature_names, config)
    return train_prepared(
        *prepared,
        trunk=trunk,
        config=config,
        weighting=weighting,
        loss_fns=loss_fns,
        resume=resume,
        on_epoch_end=on_epoch_end,
    )


def train_prepared(
    train: MultiTaskData | ParquetSource,
    validation: MultiTaskData | None,
    tasks: Sequence[Task],
    scaling: tuple[torch.Tensor | None, torch.Tensor | None],
    feature_names: Sequence[str] | None,
    stats: LabelStats,
    *,
    trunk: TrunkConfig | nn.Module | None,
    config: TrainConfig,
    weighting: Weighting | None = None,
    loss_fns: Mapping[str, LossFn] | None = None,
    resume: bool = False,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
) -> FitResult:
    """The end of `fit` once the data are encoded and checked: build the model under
    ``config.seed`` (``scaling`` is its input mean and scale), start the heads whose kind says
    so at their initial bias (from ``stats``: regression heads at the observed means), train.
    ``validation`` is already split off."""
    torch.manual_seed(config.seed)
    if isinstance(trunk, nn.Module):
        module = trunk
    else:
        module = build_trunk(trunk or MLPConfig(), train.input_shape)
    mean, scale = scaling
    model = MultiTaskModel(
        module,
        list(tasks),
        train.input_shape,
        input_mean=mean,
        input_scale=scale,
        feature_names=feature_names,
    )
    _start_biases(model, stats)
    trainer = Trainer(
        config.model_copy(update={"validation_split": 0.0}), weighting=weighting, loss_fns=loss_fns
    )
    history = trainer.fit(
        model, train, validation=validation, resume=resume, on_epoch_end=on_epoch_end
    )
    return FitResult(model, pd.DataFrame(history), trainer)


def evaluate(
    model: MultiTaskModel, inputs: Any, labels: Mapping[str, Any], *, source: str = "data"
) -> Evaluation:
    """`taskmask.training.evaluate` on raw ``inputs`` and ``labels``: per task (a mapping by
    name) its metrics on observed labels only, with its ``losses`` and the cross-task
    ``means``; auxiliary tasks and tasks without labels in ``labels`` are left out."""
    tasks = [t for t in model.tasks if not t.auxiliary and t.name in labels]
    data = make_data(
        inputs,
        {t.name: labels[t.name] for t in tasks},
        tasks,
        source=source,
        feature_names=model.feature_names,
    )
    return training_evaluate(model, data, names={t.name for t in tasks})
