"""What `Trainer.fit` does around its loop, as callbacks: the learning-rate schedule, early
stopping, checkpoints (and resuming from one), gradient-conflict diagnostics, progress and the
caller's ``on_epoch_end``. Each sees the `Fit` state and an epoch's history row."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from taskmask._world import World
from taskmask.model._model import MultiTaskModel
from taskmask.training import checkpoint
from taskmask.training._batch_loss import BatchLoss
from taskmask.training._diagnostics import cosine_row, gradient_cosines, task_gradients
from taskmask.training._early_stopping import Stopper
from taskmask.training._progress import EpochReporter
from taskmask.training._schedule import LearningRate
from taskmask.weighting import Weighting

__all__ = ["Callback", "Fit"]

logger = logging.getLogger("taskmask")


@dataclass
class Fit:
    """The state of one `Trainer.fit` call; ``done``: epochs trained so far; ``stopped``:
    whether a callback asked to stop (early stopping) so far."""

    model: MultiTaskModel
    optimizer: torch.optim.Optimizer
    weighting: Weighting
    plan: BatchLoss
    world: World
    generator: torch.Generator
    epochs: int
    sizes: dict[str, int]
    config: dict[str, Any]  # the settings a checkpoint records, as JSON
    history: list[dict[str, float]] = field(default_factory=list)
    done: int = 0
    stopped: bool = False
    best_epoch: int | None = None

    def log(self, message: str) -> None:
        """An INFO event (resumed, stopped early), on rank 0 only."""
        if self.world.is_main:
            logger.info(message)


class Callback:
    """Hooks of `Trainer.fit`, each a no-op by default. ``on_epoch_end`` may add to the row
    (before it is checkpointed, for the callbacks after it) and returns True to stop."""

    def on_fit_start(self, fit: Fit) -> None:
        """Before the first epoch (after the model and optimiser exist)."""

    def on_losses(self, fit: Fit, losses: torch.Tensor, counts: torch.Tensor) -> None:
        """Each training batch's global per-task losses ``(T,)`` (with their graph) and
        observed counts, before the backward pass."""

    def on_epoch_end(self, fit: Fit, row: dict[str, float]) -> bool:
        """After an epoch, its row recorded in ``fit.history``; True: stop training."""
        return False

    def on_fit_end(self, fit: Fit) -> None:
        """After the last epoch."""


class GradientConflict(Callback):
    """``cosine/A/B``: the mean cosine between task gradients on the trunk over the first
    ``batches`` batches of each epoch."""

    def __init__(self, batches: int) -> None:
        self.batches = batches
        self.cosines: list[torch.Tensor] = []

    def on_losses(self, fit: Fit, losses: torch.Tensor, counts: torch.Tensor) -> None:
        if len(self.cosines) < self.batches:
            shared = [p for p in fit.model.trunk.parameters() if p.requires_grad]
            gradients = fit.world.sum(task_gradients(losses, counts, shared))
            self.cosines.append(gradient_cosines(gradients))

    def on_epoch_end(self, fit: Fit, row: dict[str, float]) -> bool:
        if self.cosines:
            row.update(cosine_row(fit.model.task_names, torch.stack(self.cosines).nanmean(0)))
        self.cosines = []
        return False


class EarlyStopper(Callback):
    """Early stopping (`Stopper`): stops, then restores the best weights if so configured."""

    def __init__(self, stopper: Stopper) -> None:
        self.stopper = stopper

    def on_epoch_end(self, fit: Fit, row: dict[str, float]) -> bool:
        return self.stopper.update(row, fit.model)

    def on_fit_end(self, fit: Fit) -> None:
        restored = self.stopper.restore(fit.model)
        fit.best_epoch = self.stopper.best_epoch if restored else None
        if self.stopper.exhausted and fit.history:
            fit.log(self.stopper.stop_message(len(fit.history), restored=restored))


class ScheduleStep(Callback):
    """Steps the learning-rate schedule after each epoch."""

    def __init__(self, schedule: LearningRate) -> None:
        self.schedule = schedule

    def on_epoch_end(self, fit: Fit, row: dict[str, float]) -> bool:
        self.schedule.step(row)
        return False


class Checkpointing(Callback):
    """A checkpoint in ``directory`` after every epoch; ``resume``: start from it."""

    def __init__(
        self,
        directory: Path,
        stopper: Stopper,
        schedule: LearningRate | None,
        *,
        resume: bool,
    ) -> None:
        self.directory, self.stopper, self.schedule, self.resume = (
            directory,
            stopper,
            schedule,
            resume,
        )

    def on_fit_start(self, fit: Fit) -> None:
        if not self.resume:
            return
        state = checkpoint.load(self.directory)
        source = self.directory / checkpoint.INDEX_FILE
        checkpoint.check_resumable(state.meta, fit.config, fit.sizes, source)
        checkpoint.restore_training_state(
            state,
            model=fit.model,
            optimizer=fit.optimizer,
            weighting=fit.weighting,
            generator=fit.generator,
            world=fit.world,
            source=source,
        )
        best = checkpoint.unprefixed("best.", state.tensors)
        self.stopper.load_state(state.meta["early_stopping"], best)
        if self.schedule is not None:
            self.schedule.load_state(state.meta["scheduler"])
        fit.history = [dict(row) for row in state.meta["history"]]
        fit.done, fit.stopped = int(state.meta["epoch"]), bool(state.meta["stopped"])
        left = "it had stopped early: nothing left to train" if fit.stopped else "resuming"
        fit.log(f"{source}: epoch {fit.done} of {fit.epochs} done; {left}")

    def on_epoch_end(self, fit: Fit, row: dict[str, float]) -> bool:
        state = checkpoint.training_state(
            model=fit.model,
            optimizer=fit.optimizer,
            weighting=fit.weighting,
            generator=fit.generator,
            world=fit.world,
        )  # on every rank: it gathers their RNG states
        if fit.world.is_main:
            best_state, early_stopping = self.stopper.state()
            state.tensors.update(checkpoint.prefixed("best.", best_state))
            state.meta.update(
                epoch=int(row["epoch"]),
                stopped=fit.stopped,
                history=fit.history,
                early_stopping=early_stopping,
                config=fit.config,
                n_samples=dict(fit.sizes),
                scheduler=None if self.schedule is None else self.schedule.state(),
            )
            checkpoint.save(self.directory, state)
        fit.world.barrier()  # no rank goes on (to resume, say) before the commit
        return False


class Progress(Callback):
    """The bar or the log lines of `EpochReporter`, advanced once per epoch."""

    def __init__(self, reporter: EpochReporter) -> None:
        self.reporter = reporter
        self.epochs: Iterator[int] = iter(())

    def on_fit_start(self, fit: Fit) -> None:
        last = fit.done if fit.stopped else fit.epochs
        self.epochs = iter(self.reporter.epochs_of(fit.done, last))
        next(self.epochs, None)  # the bar opens at the first epoch

    def on_epoch_end(self, fit: Fit, row: dict[str, float]) -> bool:
        self.reporter.end_epoch(row, stopped=fit.stopped)
        if not fit.stopped:
            next(self.epochs, None)
        return False


class EpochHook(Callback):
    """The caller's ``on_epoch_end(row)``; an exception it raises ends training there."""

    def __init__(self, hook: Callable[[dict[str, float]], None]) -> None:
        self.hook = hook

    def on_epoch_end(self, fit: Fit, row: dict[str, float]) -> bool:
        self.hook(row)
        return False
