"""Global batches from data read in parts (Parquet row groups, say) in bounded memory:
`StreamedBatches`, a `taskmask.data.BatchSource`, built from a shuffled order of the
parts, their sharding over the processes (`shard_parts`), a shuffle buffer (`ShuffleBuffer`)
and re-cutting into batches (`rebatch`). All randomness comes from the generators passed in;
`taskmask.data` describes the semantics."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch

from taskmask._world import World
from taskmask.data._batches import to_device
from taskmask.data._memory import MultiTaskData
from taskmask.errors import TaskmaskError
from taskmask.functional._labels import EncodedLabels


def _flat(data: MultiTaskData) -> list[torch.Tensor]:
    return [data.inputs, *(t for enc in data.labels.values() for t in (enc.target, enc.observed))]


def _unflat(tensors: Sequence[torch.Tensor], names: Sequence[str]) -> MultiTaskData:
    labels = {
        name: EncodedLabels(tensors[1 + 2 * i], tensors[2 + 2 * i]) for i, name in enumerate(names)
    }
    return MultiTaskData(tensors[0], labels)


def concat(chunks: Sequence[MultiTaskData]) -> MultiTaskData:
    """The rows of ``chunks`` (alike in tasks and shapes) one after the other."""
    if len(chunks) == 1:
        return chunks[0]
    names = list(chunks[0].labels)
    flats = [_flat(chunk) for chunk in chunks]
    return _unflat([torch.cat(parts) for parts in zip(*flats, strict=True)], names)


def rebatch(blocks: Iterable[MultiTaskData], size: int) -> Iterator[MultiTaskData]:
    """The rows of ``blocks`` in order, in batches of ``size`` rows (the last one may be
    shorter); a batch is a view of the blocks where it can be."""
    pending: list[MultiTaskData] = []
    n = 0
    for block in blocks:
        pending.append(block)
        n += len(block)
        if n < size:
            continue
        whole = concat(pending)
        cut = n - n % size
        for start in range(0, cut, size):
            yield whole.take(slice(start, start + size))
        pending = [whole.take(slice(cut, n))] if cut < n else []
        n -= cut
    if n:
        yield concat(pending)


def displacements(slots: torch.Tensor) -> torch.Tensor:
    """For incoming rows ``i`` that take buffer slots ``slots[i]`` one after the other: the
    earlier incoming row each one displaces, or -1 where it displaces the slot's content from
    before (a pure function of ``slots``, sorted once, no Python loop)."""
    k = len(slots)
    order = torch.argsort(slots, stable=True)  # by slot; stable keeps arrival order within one
    same = slots[order[1:]] == slots[order[:-1]]
    previous = torch.full((k,), -1, dtype=torch.long)
    previous[order[1:][same]] = order[:-1][same]
    return previous


class ShuffleBuffer:
    """The usual streaming shuffle buffer (as tf.data's), vectorised per chunk. `shuffle` fills
    its ``capacity`` slots with the first rows; afterwards each incoming row takes the slot of
    a buffered row drawn uniformly at random (one draw per row, so a row may displace one that
    came in just before it), and the displaced row goes out; the rows left at the end go out
    in a random order. ``capacity=0``: each chunk goes out in a random order of its rows."""

    def __init__(self, capacity: int, generator: torch.Generator) -> None:
        self.capacity = capacity
        self.generator = generator
        self.store: list[torch.Tensor] = []
        self.names: list[str] = []
        self.size = 0

    def shuffle(self, chunks: Iterable[MultiTaskData]) -> Iterator[MultiTaskData]:
        """Every row of ``chunks`` exactly once, shuffled; see the class docstring."""
        for chunk in chunks:
            out = self._push(chunk)
            if out is not None:
                yield out
        if self.size:
            order = torch.randperm(self.size, generator=self.generator)
            yield _unflat([s[: self.size][order] for s in self.store], self.names)
            self.size = 0

    def _push(self, chunk: MultiTaskData) -> MultiTaskData | None:
        """Buffer ``chunk``; returns the rows it displaced, in the order they went out."""
        n = len(chunk)
        if self.capacity == 0:
            return chunk.take(torch.randperm(n, generator=self.generator))
        tensors = _flat(chunk)
        if not self.store:
            self.names = list(chunk.labels)
            self.store = [t.new_empty((self.capacity, *t.shape[1:])) for t in tensors]
        start = min(self.capacity - self.size, n)  # fill the free slots first
        for slot, t in zip(self.store, tensors, strict=True):
            slot[self.size : self.size + start] = t[:start]
        self.size += start
        if start == n:
            return None
        incoming = [t[start:] for t in tensors]
        slots = torch.randint(self.capacity, (n - start,), generator=self.generator)
        previous = displacements(slots)
        from_store = previous < 0
        out = []
        for slot, rows in zip(self.store, incoming, strict=True):
            gone = rows.new_empty(rows.shape)
            gone[from_store] = slot[slots[from_store]]
            gone[~from_store] = rows[previous[~from_store]]
            out.append(gone)
        last = torch.ones(len(slots), dtype=torch.bool)  # the rows that stay: last in their slot
        last[previous[~from_store]] = False
        for slot, rows in zip(self.store, incoming, strict=True):
            slot[slots[last]] = rows[last]
        return _unflat(out, self.names)


def shard_parts(sizes: Sequence[int], n_shards: int) -> list[list[int]]:
    """Parts of ``sizes`` rows, taken in order, each to the shard with the fewest rows so far
    (the lowest index on ties): per shard, the positions of its parts, in order."""
    shards: list[list[int]] = [[] for _ in range(n_shards)]
    loads = [0] * n_shards
    for position, size in enumerate(sizes):
        shard = loads.index(min(loads))
        shards[shard].append(position)
        loads[shard] += size
    return shards


class StreamedBatches:
    """Each epoch: the parts (of ``sizes`` rows, read by ``read(indices)`` as packed chunks) in
    an order drawn from the shared generator, sharded over the ranks (`shard_parts`); this
    rank's rows through a `ShuffleBuffer` of ``shuffle_buffer`` rows; batches of its
    `World.piece` of ``batch_size`` rows; then empty pieces until the rank with the most
    batches is done, so that every rank takes as many steps."""

    def __init__(
        self,
        sizes: Sequence[int],
        read: Callable[[Sequence[int]], Iterator[MultiTaskData]],
        shuffle_buffer: int,
        batch_size: int,
        world: World,
    ) -> None:
        if batch_size < world.world_size:
            raise TaskmaskError(
                f"batch_size {batch_size} is smaller than the {world.world_size} processes: "
                "streamed, every process needs rows in each global batch"
            )
        self.sizes, self.read, self.shuffle_buffer, self.world = sizes, read, shuffle_buffer, world
        n = world.world_size
        pieces = [World(r, n, world.device).piece(batch_size) for r in range(n)]
        self.piece_sizes = [piece.stop - piece.start for piece in pieces]
        self._empty: MultiTaskData | None = None

    def epoch(self, generator: torch.Generator) -> Iterator[MultiTaskData]:
        """This rank's pieces of one epoch's global batches. Draws the parts' order, then one
        seed for the buffers, from ``generator``, at once: the same on every rank."""
        order = torch.randperm(len(self.sizes), generator=generator).tolist()
        seed = int(torch.randint(0, 2**62, (), generator=generator))
        shards = shard_parts([self.sizes[i] for i in order], self.world.world_size)
        steps = max(
            math.ceil(sum(self.sizes[order[i]] for i in shard) / size)
            for shard, size in zip(shards, self.piece_sizes, strict=True)
        )
        mine = [order[i] for i in shards[self.world.rank]]
        buffer = ShuffleBuffer(
            self.shuffle_buffer, torch.Generator().manual_seed(seed + self.world.rank)
        )
        return self._pieces(mine, buffer, steps)

    def _pieces(
        self, parts: list[int], buffer: ShuffleBuffer, steps: int
    ) -> Iterator[MultiTaskData]:
        taken = 0
        for piece in rebatch(buffer.shuffle(self.read(parts)), self.piece_sizes[self.world.rank]):
            yield to_device(piece, self.world.device)
            taken += 1
        for _ in range(steps - taken):
            yield self.empty()

    def empty(self) -> MultiTaskData:
        """A piece with no rows (the first chunk's first 0 rows, for the shapes)."""
        if self._empty is None:
            first = next(self.read([0]))
            self._empty = to_device(first.take(slice(0, 0)), self.world.device)
        return self._empty
