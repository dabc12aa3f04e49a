"""Training on several processes (``torchrun``) and devices: which process this is and which
device it trains on, its share of each global batch (`BatchSource`, `InMemoryBatches`, with
pinned-memory copies to CUDA), and the few collectives the trainer needs.

Outside torchrun (no ``WORLD_SIZE`` > 1 in the environment and no process group) the world is
one process and every collective here is the identity, so the trainer has one code path.

What holds under torchrun (see ``docs/distributed.md``): every rank draws the same permutation
per epoch from the seeded generator and cuts it into the same global batches of ``batch_size``
rows as one process would; rank ``r`` takes the ``r``-th of ``world_size`` near-equal contiguous
pieces of each. Per-task loss sums and observed counts are summed over the ranks, so each task's
loss is its mean over the observed labels of the global batch, and every rank hands the same
losses and counts to the weighting.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from taskmask.errors import TaskmaskError

DEVICE_SHARE = 0.5
"""An in-memory training set moves to a CUDA device once when it takes at most this share of
the device's free memory; otherwise each batch is copied over through pinned host memory."""


def resolve_device(name: str, *, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when available, else the CPU. A CUDA device without an index
    (``auto``, ``cuda``) is the current one, or under torchrun the process's own GPU,
    ``cuda:LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TaskmaskError(f"device {name!r}: CUDA is not available here")
    if device.type == "cuda" and device.index is None:
        index = local_rank if "LOCAL_RANK" in os.environ else torch.cuda.current_device()
        device = torch.device("cuda", index)
    return device


def rank() -> int:
    """This process's rank: 0 outside torchrun; usable before the process group exists."""
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Whether this process writes files and reports progress (rank 0)."""
    return rank() == 0


@dataclass(frozen=True)
class World:
    """The processes training together, seen from one of them."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def piece(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` rows (the first ``n % world_size`` ranks get
        one row more, as `torch.tensor_split`); possibly empty."""
        size, extra = divmod(n, self.world_size)
        start = self.rank * size + min(self.rank, extra)
        return slice(start, start + size + (self.rank < extra))

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the ranks, in place (every rank gets the same result)."""
        if self.world_size > 1:
            dist.all_reduce(tensor)
        return tensor

    def sum_losses(
        self, local_sums: torch.Tensor, local_counts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The global batch's per-task loss sums (detached) and observed counts, from this
        rank's: one all-reduce."""
        if self.world_size == 1:
            return local_sums.detach(), local_counts
        both = self.sum(torch.stack([local_sums.detach(), local_counts.to(local_sums.dtype)]))
        return both[0], both[1]

    def gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's ``tensor`` ``(n_r, ...)`` stacked in rank order: ``(sum n_r, ...)``."""
        if self.world_size == 1:
            return tensor
        if tensor.dtype == torch.bool:  # not every backend reduces bool
            return self.gather_rows(tensor.to(torch.uint8)).bool()
        size = torch.tensor([len(tensor)], device=tensor.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world_size)]
        dist.all_gather(sizes, size)
        longest = max(int(s) for s in sizes)
        padded = tensor.new_zeros((longest, *tensor.shape[1:]))
        padded[: len(tensor)] = tensor
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        return torch.cat([part[: int(n)] for part, n in zip(parts, sizes, strict=True)])

    @torch.no_grad()
    def broadcast(self, tensors: Iterable[torch.Tensor]) -> None:
        """Overwrite ``tensors`` with rank 0's values."""
        if self.world_size == 1:
            return
        for tensor in tensors:
            if tensor.dtype == torch.bool:
                carrier = tensor.to(torch.uint8)
                dist.broadcast(carrier, src=0)
                tensor.copy_(carrier.bool())
            else:
                dist.broadcast(tensor, src=0)

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.world_size > 1:
            dist.barrier()

    def agree(self, value: int) -> bool:
        """Whether every rank passed the same ``value``."""
        if self.world_size == 1:
            return True
        both = torch.tensor([value, -value], device=self.device)
        dist.all_reduce(both, op=dist.ReduceOp.MAX)
        return int(both[0]) == -int(both[1])

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in `DistributedDataParallel` when there are several ranks (which also
        copies rank 0's parameters and buffers to the others), else ``model`` itself.
        Buffers are synchronised by `broadcast` at epoch ends, not at every forward."""
        if self.world_size == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)

    def global_losses(
        self, local_sums: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor
    ) -> torch.Tensor:
        """Per-task means over the global batch, ``sums / counts``, differentiable through this
        rank's ``local_sums`` only, scaled by ``world_size``: the gradients that
        `DistributedDataParallel` averages over the ranks are then those of one process on
        the whole global batch. (``sums`` and ``counts`` are the all-reduced constants.)"""
        counts = counts.clamp(min=1)
        if self.world_size == 1:
            return local_sums / counts
        local = local_sums - local_sums.detach()  # value 0, gradient of local_sums
        return sums / counts + self.world_size * local / counts

    def gradient_sync(self, net: nn.Module, own_backward: bool) -> AbstractContextManager[None]:
        """The context for a step's forward and backward. A weighting with its own `backward`
        (GradNorm, the Jacobian aggregators) may fill ``.grad`` outside autograd, which
        `DistributedDataParallel` would not see: its steps run under ``no_sync`` and
        `average_gradients` averages afterwards."""
        if isinstance(net, DistributedDataParallel) and own_backward:
            return net.no_sync()
        return nullcontext()

    @torch.no_grad()
    def average_gradients(self, model: nn.Module, own_backward: bool) -> None:
        """After a step's backward under ``no_sync``: average ``model``'s gradients over the
        ranks (the weighting's own parameters got the same gradient on every rank)."""
        if self.world_size == 1 or not own_backward:
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if grads:
            flat = self.sum(torch.cat([g.reshape(-1) for g in grads])) / self.world_size
            for grad, part in zip(
                grads, torch.split(flat, [g.numel() for g in grads]), strict=True
            ):
                grad.copy_(part.view_as(grad))

    def sync_weighting(self, weighting: nn.Module, own_backward: bool) -> None:
        """A weighting with its own `backward` updates its state from this rank's gradients:
        rank 0's state is copied to every rank after each step, so that they stay equal."""
        if self.world_size > 1 and own_backward:
            self.broadcast([*weighting.parameters(), *weighting.buffers()])


_OWNED_GROUP = False


def setup(device: str) -> World:
    """The world of this process. Under torchrun (``WORLD_SIZE`` > 1) the process group is
    started here unless it already is: NCCL on CUDA, gloo on the CPU (the rendezvous comes
    from torchrun's environment); it is destroyed at exit."""
    global _OWNED_GROUP
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank=local_rank)
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return World(0, 1, resolved)
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
        _OWNED_GROUP = True
        atexit.register(shutdown)
    return World(dist.get_rank(), dist.get_world_size(), resolved)


def shutdown() -> None:
    """Destroy the process group if `setup` started it."""
    global _OWNED_GROUP
    if _OWNED_GROUP and dist.is_initialized():
        dist.destroy_process_group()
    _OWNED_GROUP = False
