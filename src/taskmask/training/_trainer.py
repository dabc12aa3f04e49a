"""The training loop: masked per-task losses, a weighting, early stopping, a per-epoch history,
a checkpoint per epoch (`taskmask.training.checkpoint`), and one process or several under torchrun
(`taskmask._world`) with the same arithmetic."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

import taskmask._world as distributed
from taskmask._world import World, resolve_device
from taskmask.data._batches import BatchSource, InMemoryBatches
from taskmask.data._memory import MultiTaskData, split
from taskmask.data._streaming import StreamedData
from taskmask.errors import TaskmaskError
from taskmask.model._heads import HeadOutputs
from taskmask.model._model import MultiTaskModel, raw_outputs
from taskmask.tasks._task import Task
from taskmask.training import checkpoint
from taskmask.training._batch_loss import BatchLoss, LossFn
from taskmask.training._diagnostics import cosine_row, gradient_cosines, task_gradients
from taskmask.training._early_stopping import EarlyStopping, Stopper
from taskmask.training._progress import EpochReporter
from taskmask.training._rows import kept_metrics, loss_row, metric_row
from taskmask.training._schedule import LearningRate, Schedule
from taskmask.weighting import Weighting, make_weighting

__all__ = ["EarlyStopping", "LossFn", "Schedule", "TrainConfig", "Trainer", "resolve_device"]


class TrainConfig(BaseModel):
    """Optimisation settings. ``seed`` makes a run repeatable bit for bit on one machine.
    ``conflict_batches`` > 0 records, per epoch, the mean cosine similarity between each pair
    of task gradients on the trunk over that many batches (``cosine/A/B`` in the history).
    ``train_metrics`` needs every output of an epoch in memory: with training data streamed
    from files (`taskmask.data`) only the training losses are reported.

    ``device``: ``auto`` (CUDA when available; under torchrun each process's own GPU) or a
    torch device name. ``precision``: ``fp32``, or ``bf16`` to run the model's forward passes
    under bfloat16 autocast (losses, metrics, weights and optimiser stay float32).
    ``checkpoint_dir``: where to write a checkpoint at the end of every epoch (None: none;
    see `taskmask.training.checkpoint`); ``Trainer.fit(..., resume=True)`` continues from it.
    ``scheduler``: a learning-rate `Schedule` (None: ``lr`` throughout); the history's ``lr``
    is the rate of each epoch. ``progress``: a bar (None: when stderr is a terminal); without
    one, the ``taskmask`` logger gets a line every ``log_every`` epochs.
    """

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=100, ge=1)
    batch_size: int = Field(default=256, ge=1)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(default=1e-3, gt=0.0)
    scheduler: Schedule | None = None
    weight_decay: float = Field(default=0.0, ge=0.0)
    momentum: float = Field(default=0.9, ge=0.0)
    clip_norm: float | None = Field(default=None, gt=0.0)
    seed: int = 0
    validation_split: float = Field(default=0.0, ge=0.0, lt=1.0)
    early_stopping: EarlyStopping | None = None
    weighting: str = "static"
    weighting_options: dict[str, Any] = Field(default_factory=dict)
    train_metrics: bool = True
    conflict_batches: int = Field(default=0, ge=0)
    progress: bool | None = None
    log_every: int = Field(default=1, ge=1)
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    checkpoint_dir: Path | None = None


def _optimizer(config: TrainConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    # The fused kernel (CPU and CUDA) saves ~0.3 ms a step on small models; same maths.
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return kind(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)


def _pos_weights(tasks: tuple[Task, ...], device: torch.device) -> dict[str, torch.Tensor | None]:
    weights: dict[str, torch.Tensor | None] = {}
    for task in tasks:
        if task.pos_weight == "balanced":
            raise TaskmaskError(
                f"task {task.name!r}: resolve pos_weight='balanced' before training"
            )
        value = task.pos_weight
        weights[task.name] = (
            None if value is None else torch.tensor(value, dtype=torch.float32, device=device)
        )
    return weights


def _autocast(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def _forward(net: nn.Module, inputs: torch.Tensor, precision: str) -> HeadOutputs:
    """The heads' outputs, float32 whatever the autocast computed them in."""
    with _autocast(inputs.device, precision):
        outputs: HeadOutputs = net(inputs)
    if precision == "fp32":
        return outputs
    return outputs.map(lambda block: block.float())


@dataclass
class _Session:
    """What one `Trainer.fit` call trains with."""

    model: MultiTaskModel
    net: nn.Module  # ``model``, or its DistributedDataParallel wrapper under torchrun
    optimizer: torch.optim.Optimizer
    weighting: Weighting
    plan: BatchLoss
    world: World
    generator: torch.Generator
    schedule: LearningRate | None = None


class Trainer:
    """Trains a `MultiTaskModel`; ``loss_fns`` may replace a task's loss (same contract as
    `taskmask.tasks.task_loss`: return ``LossTerm(sum over observed, count)``).

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
    ) -> None:
        self.config = config or TrainConfig()
        self.weighting = weighting
        self.loss_fns = dict(loss_fns or {})
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
            return self._fit(
                model, train, validation=validation, resume=resume, on_epoch_end=on_epoch_end
            )

    def _fit(
        self,
        model: MultiTaskModel,
        train: MultiTaskData | StreamedData,
        *,
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
        session = self._session(model, distributed.setup(config.device), generator)
        world, plan = session.world, session.plan
        batches: BatchSource = (
            InMemoryBatches(plan.pack(train), config.batch_size, world)
            if isinstance(train, MultiTaskData)
            else train.batches(plan.tasks, config.batch_size, world, pack=plan.pack)
        )
        validation = plan.pack(validation.to(world.device)) if validation is not None else None
        stopper = Stopper(config.early_stopping, validation is not None)
        sizes = {"train": len(train), "validation": 0 if validation is None else len(validation)}
        reporter = EpochReporter(
            epochs=config.epochs,
            show_bar=config.progress,
            log_every=config.log_every,
            monitor=config.early_stopping.monitor if config.early_stopping else None,
            enabled=world.is_main,
        )
        done, stopped = self._resume(session, stopper, sizes, reporter) if resume else (0, False)
        if not world.agree(done):
            raise TaskmaskError(
                "the processes resumed from different epochs: under torchrun every rank needs "
                "the same checkpoint directory (shared storage, or a copy on each machine)"
            )
        session.net = world.wrap(model)
        for epoch in reporter.epochs_of(done, done if stopped else config.epochs):
            start = time.perf_counter()
            row = {"epoch": float(epoch), "lr": float(session.optimizer.param_groups[0]["lr"])}
            plan.epochs_done = epoch - 1  # LL-R's rejection rate, a function of the epoch
            row.update(self._train_epoch(session, batches))
            world.broadcast(model.buffers())  # e.g. batch-norm statistics: rank 0's
            if validation is not None:
                row.update(self._evaluate(model, validation, plan, prefix="val", world=world))
            row["seconds"] = time.perf_counter() - start
            self.history.append(row)
            stopped = stopper.update(row, model)
            if session.schedule is not None:
                session.schedule.step(row)
            self._save_checkpoint(session, epoch, stopped, stopper, sizes)
            reporter.end_epoch(row, stopped=stopped)
            if on_epoch_end is not None:
                on_epoch_end(row)
            if stopped:
                break
        restored = stopper.restore(model)
        self.best_epoch = stopper.best_epoch if restored else None
        if stopped and self.history:
            reporter.event(stopper.stop_message(len(self.history), restored=restored))
        return self.history

    def _session(self, model: MultiTaskModel, world: World, generator: torch.Generator) -> _Session:
        model.to(world.device)
        weighting = (
            self.weighting
            or make_weighting(self.config.weighting, model.tasks, **self.config.weighting_options)
        ).to(world.device)
        self.weighting = weighting
        optimizer = _optimizer(self.config, [*model.parameters(), *weighting.parameters()])
        plan = self._plan(model, world.device)
        scheduler = self.config.scheduler
        schedule = (
            None if scheduler is None else LearningRate(scheduler, optimizer, self.config.epochs)
        )
        return _Session(model, model, optimizer, weighting, plan, world, generator, schedule)

    def _train_epoch(self, session: _Session, batches: BatchSource) -> dict[str, float]:
        model, world, weighting = session.model, session.world, session.weighting
        model.train()
        shared = [p for p in model.trunk.parameters() if p.requires_grad]
        sums = torch.zeros(len(model.tasks), device=world.device)
        counts = torch.zeros_like(sums)
        kept: list[tuple[MultiTaskData, HeadOutputs]] = []
        cosines: list[torch.Tensor] = []
        for batch in batches.epoch(session.generator):
            outputs, batch_sums, batch_counts = self._step(session, batch, shared, cosines)
            sums += batch_sums
            counts += batch_counts
            if self.config.train_metrics and isinstance(batches, InMemoryBatches):
                kept.append((batch, outputs.map(torch.Tensor.detach)))
        epoch_losses = (sums / counts.clamp(min=1)).float()
        used = weighting.current_weights()  # the weights this epoch trained with
        row = loss_row("train", model.tasks, epoch_losses, used)
        if kept:
            row.update(kept_metrics("train", model.tasks, session.plan, session.world, kept))
        for task, weight in zip(model.tasks, used.tolist(), strict=True):
            row[f"weight/{task.name}"] = weight
        weighting.end_epoch(epoch_losses)
        if cosines:
            row.update(cosine_row(model.task_names, torch.stack(cosines).nanmean(dim=0)))
        return row

    def _step(
        self,
        session: _Session,
        batch: MultiTaskData,
        shared: list[torch.nn.Parameter],
        cosines: list[torch.Tensor],
    ) -> tuple[HeadOutputs, torch.Tensor, torch.Tensor]:
        """One optimiser step on a global batch (this process's piece of it); returns this
        piece's outputs and the global batch's per-task loss sums and observed counts."""
        s, config = session, self.config
        with s.world.gradient_sync(s.net, s.weighting.owns_backward):
            outputs = _forward(s.net, batch.inputs, config.precision)
            local_sums, local_counts = s.plan(outputs, batch)
            sums, counts = s.world.sum_losses(local_sums, local_counts)
            losses = s.world.global_losses(local_sums, sums, counts)
            if len(cosines) < config.conflict_batches:
                gradients = s.world.sum(task_gradients(losses, counts, shared))
                cosines.append(gradient_cosines(gradients))
            s.optimizer.zero_grad(set_to_none=True)
            s.weighting.backward(losses, counts, shared=shared)
        s.world.average_gradients(s.model, s.weighting.owns_backward)
        if config.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(s.model.parameters(), config.clip_norm)
        s.optimizer.step()
        s.world.sync_weighting(s.weighting, s.weighting.owns_backward)
        if s.weighting.needs_losses_after_step:
            with torch.no_grad():
                after, _ = s.plan(_forward(s.model, batch.inputs, config.precision), batch)
            s.weighting.after_step(s.world.sum(after) / counts.clamp(min=1), counts)
        return outputs, sums, counts

    def _resume(
        self,
        session: _Session,
        stopper: Stopper,
        sizes: Mapping[str, int],
        reporter: EpochReporter,
    ) -> tuple[int, bool]:
        """Load the checkpoint; returns its epoch and whether that run had stopped early."""
        directory = self.config.checkpoint_dir
        if directory is None:
            raise TaskmaskError("resume=True needs a checkpoint_dir in the training config")
        state = checkpoint.load(directory)
        source = Path(directory) / checkpoint.INDEX_FILE
        checkpoint.check_resumable(state.meta, _resumable(self.config), sizes, source)
        checkpoint.restore_training_state(
            state,
            model=session.model,
            optimizer=session.optimizer,
            weighting=session.weighting,
            generator=session.generator,
            world=session.world,
            source=source,
        )
        stopper.load_state(
            state.meta["early_stopping"], checkpoint.unprefixed("best.", state.tensors)
        )
        if session.schedule is not None:
            session.schedule.load_state(state.meta["scheduler"])
        self.history = [dict(row) for row in state.meta["history"]]
        epoch, stopped = int(state.meta["epoch"]), bool(state.meta["stopped"])
        left = "it had stopped early: nothing left to train" if stopped else "resuming"
        reporter.event(f"{source}: epoch {epoch} of {self.config.epochs} done; {left}")
        return epoch, stopped

    def _save_checkpoint(
        self,
        session: _Session,
        epoch: int,
        stopped: bool,
        stopper: Stopper,
        sizes: Mapping[str, int],
    ) -> None:
        directory = self.config.checkpoint_dir
        if directory is None:
            return
        state = checkpoint.training_state(
            model=session.model,
            optimizer=session.optimizer,
            weighting=session.weighting,
            generator=session.generator,
            world=session.world,
        )  # on every rank: it gathers their RNG states
        if session.world.is_main:
            best_state, early_stopping = stopper.state()
            state.tensors.update(checkpoint.prefixed("best.", best_state))
            state.meta.update(
                epoch=epoch,
                stopped=stopped,
                history=self.history,
                early_stopping=early_stopping,
                config=_resumable(self.config),
                n_samples=dict(sizes),
                scheduler=None if session.schedule is None else session.schedule.state(),
            )
            checkpoint.save(directory, state)
        session.world.barrier()  # no rank goes on (to resume, say) before the commit

    def _plan(self, model: MultiTaskModel, device: torch.device) -> BatchLoss:
        pos_weights = _pos_weights(model.tasks, device)
        return BatchLoss(
            model.tasks,
            loss_fns=self.loss_fns,
            pos_weights=pos_weights,
            device=device,
            layout=model.layout,
        )

    def evaluate(
        self, model: MultiTaskModel, data: MultiTaskData, *, prefix: str = "val"
    ) -> dict[str, float]:
        """Per-task losses (mean over observed labels) and metrics over all of ``data``."""
        device = next(model.parameters()).device
        plan = self._plan(model, device)
        data = plan.pack(data.to(device))
        return self._evaluate(model, data, plan, prefix=prefix, world=World(0, 1, device))

    @torch.no_grad()
    def _evaluate(
        self,
        model: MultiTaskModel,
        data: MultiTaskData,
        plan: BatchLoss,
        *,
        prefix: str,
        world: World,
    ) -> dict[str, float]:
        """Each process computes the outputs of its piece of ``data``; all get all of them."""
        piece = data.inputs[world.piece(len(data))]
        size = max(self.config.batch_size, 1024)
        with _autocast(data.inputs.device, self.config.precision):
            # raw_outputs needs a row: an empty piece (fewer rows than processes) runs one
            local = raw_outputs(model, piece if len(piece) else data.inputs[:1], batch_size=size)
        outputs = {k: world.gather_rows(v[: len(piece)].float()) for k, v in local.items()}
        sums, counts = plan(outputs, data)
        losses = torch.where(counts > 0, sums / counts.clamp(min=1), float("nan"))
        weights = self.weighting.current_weights() if self.weighting is not None else None
        row = loss_row(prefix, model.tasks, losses, weights)
        labels = {n: (e.target, e.observed) for n, e in plan.unpack(data.labels).items()}
        row.update(metric_row(prefix, model.tasks, outputs, labels))
        return row


def _resumable(config: TrainConfig) -> dict[str, Any]:
    """The settings a checkpoint records, to check that a resumed run is the same run."""
    return config.model_dump(mode="json", fallback=repr)
