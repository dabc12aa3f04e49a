"""What a run says while it trains, through the ``taskmask`` logger (library code never prints).

On a terminal (or with ``progress=True``) a compact bar shows the epochs, the ETA and the total
train and validation losses; otherwise one INFO line every ``log_every`` epochs (and the last)
gives the headline figures. Resuming and early stopping are INFO events either way. Nothing is
shown until a handler is configured (``logging.basicConfig(level="INFO")``; the CLI does it).
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterator, Mapping

from tqdm.auto import tqdm

logger = logging.getLogger("taskmask")

HEADLINE = ("train/loss", "val/loss")


def _figure(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4g}"


def epoch_line(row: Mapping[str, float], epochs: int, monitor: str | None = None) -> str:
    """``epoch 3/20  train/loss 0.512  val/loss 0.533  lr 0.001  1.2s``: the headline figures
    of a history row (the early-stopping ``monitor`` among them)."""
    keys = [*HEADLINE, *([monitor] if monitor and monitor not in HEADLINE else []), "lr"]
    parts = [f"epoch {int(row['epoch'])}/{epochs}"]
    parts += [f"{key} {_figure(row[key])}" for key in keys if key in row]
    if "seconds" in row:
        parts.append(f"{row['seconds']:.1f}s")
    return "  ".join(parts)


class EpochReporter:
    """Reports the epochs ``done + 1 .. last`` of ``epochs``: a bar when ``show_bar``, log lines
    otherwise; ``enabled`` False (a non-main torchrun rank) reports nothing."""

    def __init__(
        self,
        *,
        epochs: int,
        show_bar: bool | None,
        log_every: int,
        monitor: str | None,
        enabled: bool,
    ) -> None:
        self.epochs, self.log_every, self.monitor = epochs, log_every, monitor
        self.enabled = enabled
        self.show_bar = enabled and (show_bar if show_bar is not None else sys.stderr.isatty())

    def epochs_of(self, done: int, last: int) -> Iterator[int]:
        """The epochs ``done + 1 .. last``, behind the bar when there is one."""
        self.last = last
        self.bar = tqdm(
            range(done + 1, last + 1),
            initial=done,
            total=self.epochs,
            disable=not self.show_bar,
            desc="train",
            unit="epoch",
            dynamic_ncols=True,
        )
        yield from self.bar

    def end_epoch(self, row: Mapping[str, float], *, stopped: bool) -> None:
        """Report an epoch's history row: on the bar, or as a log line when due (every
        ``log_every`` epochs, and the last one run, ``stopped`` early or not)."""
        self.bar.set_postfix({k.split("/")[0]: _figure(row[k]) for k in HEADLINE if k in row})
        epoch = int(row["epoch"])
        final = stopped or epoch == self.last
        if self.enabled and not self.show_bar and (epoch % self.log_every == 0 or final):
            logger.info(epoch_line(row, self.epochs, self.monitor))
        if final:  # the bar counts this epoch only once the loop asks for the next one
            self.bar.n = epoch
            self.bar.close()

    def event(self, message: str) -> None:
        """An INFO event (resumed, stopped early), on rank 0 only."""
        if self.enabled:
            logger.info(message)
