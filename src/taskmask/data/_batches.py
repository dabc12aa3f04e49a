"""Batches of in-memory data for the training loop: this rank's share of each global batch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch

from taskmask._world import World
from taskmask.data._memory import MultiTaskData
from taskmask.functional._labels import EncodedLabels

DEVICE_SHARE = 0.5


class BatchSource(Protocol):
    """What the trainer's epoch loop iterates over. ``epoch(generator)`` yields, for one epoch,
    this process's share of each global batch as packed `MultiTaskData` (see
    `taskmask.training.BatchLoss.pack`) on the training device; all shuffling randomness
    comes from ``generator``, which every rank seeds alike. A streaming source (files read
    batch by batch) meets the same contract."""

    def epoch(self, generator: torch.Generator) -> Iterator[MultiTaskData]: ...


class InMemoryBatches:
    """A `BatchSource` over an in-memory data set: one ``randperm`` per epoch, global batches of
    ``batch_size`` consecutive entries of it, this rank's `World.piece` of each. On a CUDA
    device the data moves there once if it takes at most `DEVICE_SHARE` of the free memory;
    otherwise each batch is gathered on the host and copied through pinned memory."""

    def __init__(self, data: MultiTaskData, batch_size: int, world: World) -> None:
        self.batch_size = batch_size
        self.world = world
        self.data = data.to(world.device) if fits_on_device(data, world.device) else data

    def epoch(self, generator: torch.Generator) -> Iterator[MultiTaskData]:
        order = torch.randperm(len(self.data), generator=generator).to(self.data.inputs.device)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            yield to_device(self.data.take(rows[self.world.piece(len(rows))]), self.world.device)


def _nbytes(data: MultiTaskData) -> int:
    labels = [t for e in data.labels.values() for t in (e.target, e.observed)]
    return sum(t.numel() * t.element_size() for t in (data.inputs, *labels))


def fits_on_device(data: MultiTaskData, device: torch.device) -> bool:
    """Whether ``data`` should live on ``device`` for the whole run (always, off CUDA)."""
    if device.type != "cuda" or data.inputs.device == device:
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return _nbytes(data) <= DEVICE_SHARE * free


def to_device(batch: MultiTaskData, device: torch.device) -> MultiTaskData:
    """``batch`` on ``device``; host to CUDA copies go through pinned memory, asynchronously
    (the copy is ordered before any use on the current stream)."""
    if batch.inputs.device == device:
        return batch
    if device.type != "cuda" or batch.inputs.device.type != "cpu":
        return batch.to(device)
    pinned = MultiTaskData(
        batch.inputs.pin_memory(),
        {
            name: EncodedLabels(enc.target.pin_memory(), enc.observed.pin_memory())
            for name, enc in batch.labels.items()
        },
    )
    return pinned.to(device, non_blocking=True)
