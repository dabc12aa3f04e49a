"""Batches from data read in parts: the shuffle buffer passes every row exactly once and mixes
across parts, re-cutting keeps the row order, sharding is balanced and disjoint, and every rank
of a `StreamedBatches` takes as many steps, from the same draws of the shared generator."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from taskmask._world import World
from taskmask.data import MultiTaskData
from taskmask.data._stream_batches import (
    ShuffleBuffer,
    StreamedBatches,
    concat,
    rebatch,
    shard_parts,
)
from taskmask.errors import TaskmaskError
from taskmask.functional import EncodedLabels

CPU = torch.device("cpu")


def rows(start: int, stop: int) -> MultiTaskData:
    """Rows whose input is their id; one task whose label is odd/even, observed when id % 3."""
    ids = torch.arange(start, stop)
    labels = {"t": EncodedLabels((ids % 2).float()[:, None], (ids % 3 > 0)[:, None])}
    return MultiTaskData(ids.float()[:, None], labels)


def ids_of(chunks: Sequence[MultiTaskData]) -> list[int]:
    return [int(v) for chunk in chunks for v in chunk.inputs[:, 0]]


def parts(sizes: Sequence[int]) -> list[MultiTaskData]:
    bounds = [0, *torch.tensor(sizes).cumsum(0).tolist()]
    return [rows(a, b) for a, b in itertools.pairwise(bounds)]


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=8),
    capacity=st.integers(0, 70),
    seed=st.integers(0, 2**31),
)
def test_the_buffer_passes_every_row_once_with_its_labels(
    sizes: list[int], capacity: int, seed: int
) -> None:
    buffer = ShuffleBuffer(capacity, torch.Generator().manual_seed(seed))
    out = list(buffer.shuffle(parts(sizes)))
    assert sorted(ids_of(out)) == list(range(sum(sizes)))
    for chunk in out:  # each row keeps its own labels
        ids = chunk.inputs[:, 0].long()
        assert torch.equal(chunk.labels["t"].target[:, 0], (ids % 2).float())
        assert torch.equal(chunk.labels["t"].observed[:, 0], ids % 3 > 0)


def test_a_buffer_as_large_as_the_data_mixes_every_part() -> None:
    sizes = [10] * 10
    first_positions = []
    for seed in range(200):
        buffer = ShuffleBuffer(100, torch.Generator().manual_seed(seed))
        first_positions.append(ids_of(list(buffer.shuffle(parts(sizes))))[0])
    # the first row out is any of the 100, about uniformly: every part shows up first
    assert {row // 10 for row in first_positions} == set(range(10))


def test_without_a_buffer_each_part_is_shuffled_on_its_own() -> None:
    buffer = ShuffleBuffer(0, torch.Generator().manual_seed(0))
    out = ids_of(list(buffer.shuffle(parts([50, 50]))))
    assert sorted(out[:50]) == list(range(50)) and out[:50] != list(range(50))
    assert sorted(out[50:]) == list(range(50, 100))


def _sequential_buffer(sizes: list[int], capacity: int, seed: int) -> list[int]:
    """The shuffle buffer row by row, from the same draws: fill; then each incoming row takes
    a random slot and the slot's row goes out; at the end the rest in a random order."""
    generator = torch.Generator().manual_seed(seed)
    store: list[int] = []
    out: list[int] = []
    for chunk in parts(sizes):
        ids = ids_of([chunk])
        free = min(capacity - len(store), len(ids))
        store += ids[:free]
        if free < len(ids):
            slots = torch.randint(capacity, (len(ids) - free,), generator=generator).tolist()
            for row, slot in zip(ids[free:], slots, strict=True):
                out.append(store[slot])
                store[slot] = row
    order = torch.randperm(len(store), generator=generator).tolist()
    return out + [store[i] for i in order]


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=8),
    capacity=st.integers(1, 50),
    seed=st.integers(0, 2**31),
)
def test_the_vectorised_buffer_is_the_row_by_row_one(
    sizes: list[int], capacity: int, seed: int
) -> None:
    buffer = ShuffleBuffer(capacity, torch.Generator().manual_seed(seed))
    assert ids_of(list(buffer.shuffle(parts(sizes)))) == _sequential_buffer(sizes, capacity, seed)


def test_a_small_buffer_moves_rows_across_parts() -> None:
    buffer = ShuffleBuffer(20, torch.Generator().manual_seed(0))
    out = ids_of(list(buffer.shuffle(parts([30, 30, 30]))))
    position = {row: i for i, row in enumerate(out)}
    assert max(position[r] for r in range(30)) > min(position[r] for r in range(30, 60))


@pytest.mark.parametrize("size", [1, 7, 10, 64])
def test_rebatch_keeps_the_order_and_cuts_full_batches(size: int) -> None:
    batches = list(rebatch(parts([3, 10, 1, 25]), size))
    assert ids_of(batches) == list(range(39))
    assert all(len(b) == size for b in batches[:-1]) and 0 < len(batches[-1]) <= size


def test_concat_of_one_chunk_is_that_chunk() -> None:
    chunk = rows(0, 4)
    assert concat([chunk]) is chunk
    assert ids_of([concat(parts([2, 2]))]) == [0, 1, 2, 3]


def test_shards_are_disjoint_and_balanced() -> None:
    sizes = [5, 9, 3, 9, 1, 7, 4, 4]
    shards = shard_parts(sizes, 3)
    assert sorted(p for s in shards for p in s) == list(range(len(sizes)))
    loads = [sum(sizes[p] for p in shard) for shard in shards]
    assert max(loads) - min(loads) <= max(sizes)
    assert shard_parts(sizes, 1) == [list(range(len(sizes)))]
    assert shard_parts([4], 2) == [[0], []]  # fewer parts than shards


def _reader(chunks: list[MultiTaskData]) -> Callable[[Sequence[int]], Iterator[MultiTaskData]]:
    def read(indices: Sequence[int]) -> Iterator[MultiTaskData]:
        return (chunks[i] for i in indices)

    return read


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("capacity", [0, 16])
def test_ranks_read_disjoint_rows_and_take_as_many_steps(world_size: int, capacity: int) -> None:
    sizes = [13, 8, 21, 5, 9, 2]
    chunks = parts(sizes)
    generators = [torch.Generator().manual_seed(4) for _ in range(world_size)]
    epochs = []
    for rank in range(world_size):
        world = World(rank, world_size, CPU)
        source = StreamedBatches(sizes, _reader(chunks), capacity, 10, world)
        epochs.append([list(source.epoch(generators[rank])) for _ in range(2)])
    for e in range(2):
        seen = [ids_of(epochs[r][e]) for r in range(world_size)]
        assert sorted(i for ids in seen for i in ids) == list(range(sum(sizes)))
        steps = {len(epochs[r][e]) for r in range(world_size)}
        assert len(steps) == 1  # every rank takes as many steps
        for r in range(world_size):
            piece = World(r, world_size, CPU).piece(10)
            assert all(len(b) <= piece.stop - piece.start for b in epochs[r][e])
    # the ranks drew the same numbers from their generators
    states = [g.get_state() for g in generators]
    assert all(torch.equal(states[0], s) for s in states)
    assert ids_of(epochs[0][0]) != ids_of(epochs[0][1])  # each epoch its own order


def test_one_process_batches_are_full_but_the_last() -> None:
    sizes = [13, 8, 21]
    source = StreamedBatches(sizes, _reader(parts(sizes)), 5, 8, World(0, 1, CPU))
    batches = list(source.epoch(torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [8, 8, 8, 8, 8, 2]


def test_the_same_seed_gives_the_same_epochs() -> None:
    sizes = [13, 8, 21]
    source = StreamedBatches(sizes, _reader(parts(sizes)), 5, 8, World(0, 1, CPU))
    a = [ids_of(list(source.epoch(g))) for g in [torch.Generator().manual_seed(1)] * 2]
    b = [ids_of(list(source.epoch(g))) for g in [torch.Generator().manual_seed(1)] * 2]
    assert a == b and a[0] != a[1]


def test_a_batch_needs_a_row_per_process() -> None:
    with pytest.raises(TaskmaskError, match="batch_size 2 is smaller than the 3 processes"):
        StreamedBatches([4], _reader(parts([4])), 0, 2, World(0, 3, CPU))
