"""The training loop: masked per-task losses, a weighting and a per-epoch history, in one
process or several under torchrun (`taskmask._world`) with the same arithmetic. Early stopping,
checkpoints, the schedule, diagnostics and progress are callbacks (`_callbacks`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

import taskmask._world as distributed
from taskmask._world import World, resolve_device
from taskmask.data._batches import BatchSource, InMemoryBatches
from taskmask.data._memory import MultiTaskData, split
from taskmask.data._streaming import StreamedData
from taskmask.errors import TaskmaskError
from taskmask.model._heads import HeadOutputs
from taskmask.model._model import MultiTaskModel
from taskmask.training._batch_loss import LossFn
from taskmask.training._callbacks import (
    Callback,
    Checkpointing,
    EarlyStopper,
    EpochHook,
    Fit,
    GradientConflict,
    Progress,
    ScheduleStep,
)
from taskmask.training._config import TrainConfig, make_optimizer
from taskmask.training._early_stopping import EarlyStopping, Stopper, check_monitor
from taskmask.training._evaluate import autocast, batch_loss, evaluate, kept_evaluation
from taskmask.training._progress import EpochReporter
from taskmask.training._schedule import LearningRate, Schedule
from taskmask.weighting import Weighting, make_weighting

__all__ = [
    "Callback",
    "EarlyStopping",
    "LossFn",
    "Schedule",
    "TrainConfig",
    "Trainer",
    "resolve_device",
]


def _forward(net: nn.Module, inputs: torch.Tensor, precision: str) -> HeadOutputs:
    """The heads' outputs, float32 whatever the autocast computed them in."""
    with autocast(inputs.device, precision):
        outputs: HeadOutputs = net(inputs)
    if precision == "fp32":
        return outputs
    return outputs.map(lambda block: block.float())


class Trainer:
    """Trains a `MultiTaskModel`; ``loss_fns`` may replace a task's loss (same contract as
    `taskmask.tasks.task_loss`: return ``LossTerm(sum over observed, count)``);
    ``callbacks`` run after the built-in ones (diagnostics, early stopping, schedule,
    checkpoint, progress), in order.

    Under torchrun (``WORLD_SIZE`` > 1) `fit` trains with DistributedDataParallel on the same
    global batches as one process; see `taskmask._world`. Only rank 0 shows progress and
    writes checkpoints; every rank returns the same history.
    """

    def __init__(
        self,
        config: TrainConfig | None = None,
        *,
        weighting: Weighting | None = None,
        loss_fns: Mapping[str, LossFn] | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.config = config or TrainConfig()
        self.weighting = weighting
        self.loss_fns = dict(loss_fns or {})
        self.callbacks = list(callbacks)
        self.history: list[dict[str, float]] = []
        self.best_epoch: int | None = None  # after `fit`: the epoch whose weights it restored

    def fit(
        self,
        model: MultiTaskModel,
        train: MultiTaskData | StreamedData,
        *,
        validation: MultiTaskData | None = None,
        resume: bool = False,
        on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    ) -> list[dict[str, float]]:
        """Train ``model`` in place; returns (and keeps in ``self.history``) one row per epoch.
        ``on_epoch_end`` gets each epoch's row once it is recorded and checkpointed; an exception
        it raises ends training there (a tuner's pruning does so).
        ``resume``: continue from the checkpoint in ``config.checkpoint_dir`` (the model, the
        data and the settings but `checkpoint.RESUMABLE_CHANGES` must be the same as when it
        was written); the result is that of the run it continues, bit for bit on one CPU.
        ``train`` may be streamed (`taskmask.data.ParquetSource`); it then needs
        ``validation`` given, not a ``validation_split``. While it trains, the linear heads
        at each attach point are one fused parameter pair (`MultiTaskModel.fused_heads`)."""
        with model.fused_heads():
            return self._fit(model, train, validation, resume, on_epoch_end)

    def _fit(
        self,
        model: MultiTaskModel,
        train: MultiTaskData | StreamedData,
        validation: MultiTaskData | None,
        resume: bool,
        on_epoch_end: Callable[[dict[str, float]], None] | None,
    ) -> list[dict[str, float]]:
        config = self.config
        n_observed = train.n_observed()
        missing = [t.name for t in model.tasks if n_observed.get(t.name, 0) == 0]
        if missing:
            raise TaskmaskError(f"tasks {missing} have no observed label in the training data")
        generator = torch.Generator().manual_seed(config.seed)
        torch.manual_seed(config.seed)
        if validation is None and config.validation_split > 0:
            if not isinstance(train, MultiTaskData):
                raise TaskmaskError("validation_split needs in-memory data; pass validation")
            train, validation = split(train, config.validation_split, generator=generator)
        if config.early_stopping is not None:
            check_monitor(config.early_stopping.monitor, model.tasks, validation is not None)
        fit = self._start(model, distributed.setup(config.device), generator, train, validation)
        world, plan = fit.world, fit.plan
        batches: BatchSource = (
            InMemoryBatches(plan.pack(train), config.batch_size, world)
            if isinstance(train, MultiTaskData)
            else train.batches(plan.tasks, config.batch_size, world, pack=plan.pack)
        )
        validation = plan.pack(validation.to(world.device)) if validation is not None else None
        callbacks = self._callbacks(fit, validation is not None, resume, on_epoch_end)
        for callback in callbacks:
            callback.on_fit_start(fit)
        if not world.agree(fit.done):
            raise TaskmaskError(
                "the processes resumed from different epochs: under torchrun every rank needs "
                "the same checkpoint directory (shared storage, or a copy on each machine)"
            )
        self.history = fit.history
        net = world.wrap(model)
        for epoch in range(fit.done + 1, (fit.done if fit.stopped else config.epochs) + 1):
            start = time.perf_counter()
            row = {"epoch": float(epoch), "lr": float(fit.optimizer.param_groups[0]["lr"])}
            fit.plan.epochs_done = epoch - 1  # LL-R's rejection rate, a function of the epoch
            row.update(self._train_epoch(fit, net, batches, callbacks))
            world.broadcast(model.buffers())  # e.g. batch-norm statistics: rank 0's
            if validation is not None:
                weights = fit.weighting.current_weights()
                size = max(config.batch_size, 1024)
                result = evaluate(
                    model,
                    validation,
                    plan=plan,
                    weights=weights,
                    world=world,
                    batch_size=size,
                    precision=config.precision,
                )
                row.update(result.row("val"))
            row["seconds"] = time.perf_counter() - start
            fit.history.append(row)
            fit.done = epoch
            for callback in callbacks:
                fit.stopped = callback.on_epoch_end(fit, row) or fit.stopped
            if fit.stopped:
                break
        for callback in callbacks:
            callback.on_fit_end(fit)
        self.best_epoch = fit.best_epoch
        return self.history

    def _start(
        self,
        model: MultiTaskModel,
        world: World,
        generator: torch.Generator,
        train: MultiTaskData | StreamedData,
        validation: MultiTaskData | None,
    ) -> Fit:
        model.to(world.device)
        weighting = (
            self.weighting
            or make_weighting(self.config.weighting, model.tasks, **self.config.weighting_options)
        ).to(world.device)
        self.weighting = weighting
        optimizer = make_optimizer(self.config, [*model.parameters(), *weighting.parameters()])
        plan = batch_loss(model, world.device, self.loss_fns)
        sizes = {"train": len(train), "validation": 0 if validation is None else len(validation)}
        return Fit(
            model,
            optimizer,
            weighting,
            plan,
            world,
            generator,
            self.config.epochs,
            sizes,
            _resumable(self.config),
            history=self.history,
        )

    def _callbacks(
        self,
        fit: Fit,
        has_validation: bool,
        resume: bool,
        on_epoch_end: Callable[[dict[str, float]], None] | None,
    ) -> list[Callback]:
        """The built-in callbacks this config asks for, then the caller's."""
        config = self.config
        stopper = Stopper(config.early_stopping, has_validation)
        schedule = (
            None
            if config.scheduler is None
            else LearningRate(config.scheduler, fit.optimizer, config.epochs)
        )
        if resume and config.checkpoint_dir is None:
            raise TaskmaskError("resume=True needs a checkpoint_dir in the training config")
        reporter = EpochReporter(
            epochs=config.epochs,
            show_bar=config.progress,
            log_every=config.log_every,
            monitor=config.early_stopping.monitor if config.early_stopping else None,
            enabled=fit.world.is_main,
        )
        callbacks: list[Callback] = []
        if config.conflict_batches:
            callbacks.append(GradientConflict(config.conflict_batches))
        if config.early_stopping is not None:
            callbacks.append(EarlyStopper(stopper))
        if schedule is not None:
            callbacks.append(ScheduleStep(schedule))
        if config.checkpoint_dir is not None:
            directory = Path(config.checkpoint_dir)
            callbacks.append(Checkpointing(directory, stopper, schedule, resume=resume))
        callbacks.append(Progress(reporter))
        if on_epoch_end is not None:
            callbacks.append(EpochHook(on_epoch_end))
        return [*callbacks, *self.callbacks]

    def _train_epoch(
        self, fit: Fit, net: nn.Module, batches: BatchSource, callbacks: list[Callback]
    ) -> dict[str, float]:
        model, world, weighting = fit.model, fit.world, fit.weighting
        model.train()
        sums = torch.zeros(len(model.tasks), device=world.device)
        counts = torch.zeros_like(sums)
        kept: list[tuple[MultiTaskData, HeadOutputs]] = []
        for batch in batches.epoch(fit.generator):
            outputs, batch_sums, batch_counts = self._step(fit, net, batch, callbacks)
            sums += batch_sums
            counts += batch_counts
            if self.config.train_metrics and isinstance(batches, InMemoryBatches):
                kept.append((batch, outputs.map(torch.Tensor.detach)))
        epoch_losses = (sums / counts.clamp(min=1)).float()
        used = weighting.current_weights()  # the weights this epoch trained with
        row = kept_evaluation(model.tasks, fit.plan, world, epoch_losses, used, kept).row("train")
        for task, weight in zip(model.tasks, used.tolist(), strict=True):
            row[f"weight/{task.name}"] = weight
        weighting.end_epoch(epoch_losses)
        return row

    def _step(
        self, fit: Fit, net: nn.Module, batch: MultiTaskData, callbacks: list[Callback]
    ) -> tuple[HeadOutputs, torch.Tensor, torch.Tensor]:
        """One optimiser step on a global batch (this process's piece of it); returns this
        piece's outputs and the global batch's per-task loss sums and observed counts."""
        world, weighting, precision = fit.world, fit.weighting, self.config.precision
        owns = weighting.owns_backward  # declared by the weighting, never detected
        with world.gradient_sync(net, owns):
            outputs = _forward(net, batch.inputs, precision)
            local_sums, local_counts = fit.plan(outputs, batch)
            sums, counts = world.sum_losses(local_sums, local_counts)
            losses = world.global_losses(local_sums, sums, counts)
            for callback in callbacks:
                callback.on_losses(fit, losses, counts)
            fit.optimizer.zero_grad(set_to_none=True)
            shared = [p for p in fit.model.trunk.parameters() if p.requires_grad]
            weighting.backward(losses, counts, shared=shared)
        world.average_gradients(fit.model, owns)
        if self.config.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(fit.model.parameters(), self.config.clip_norm)
        fit.optimizer.step()
        world.sync_weighting(weighting, owns)
        if weighting.needs_losses_after_step:
            with torch.no_grad():
                after, _ = fit.plan(_forward(fit.model, batch.inputs, precision), batch)
            weighting.after_step(world.sum(after) / counts.clamp(min=1), counts)
        return outputs, sums, counts

    def evaluate(
        self, model: MultiTaskModel, data: MultiTaskData, *, prefix: str = "val"
    ) -> dict[str, float]:
        """The history row of `taskmask.training.evaluate` over all of ``data`` (this
        trainer's loss functions and weights)."""
        device = next(model.parameters()).device
        plan = batch_loss(model, device, self.loss_fns)
        weights = self.weighting.current_weights() if self.weighting is not None else None
        result = evaluate(
            model,
            plan.pack(data.to(device)),
            plan=plan,
            weights=weights,
            batch_size=max(self.config.batch_size, 1024),
            precision=self.config.precision,
        )
        return result.row(prefix)


def _resumable(config: TrainConfig) -> dict[str, Any]:
    """The settings a checkpoint records, to check that a resumed run is the same run."""
    return config.model_dump(mode="json", fallback=repr)
