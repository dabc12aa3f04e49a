"""Seed 000 done right: three labels on the unit square, some labels missing, three losses.

The seed (a Keras blog post, "How to Multi-task learning with missing labels in Keras") draws
100,000 points ``x`` uniformly in ``[0, 1]^2`` with three labels

- ``y0 = x1 <= 0.5``, ``y1 = x0 >= 0.5``, ``y2 = x0 + x1 > 1``,

marks labels missing (-1) in rows ``[0, 2%)`` for ``y0``, ``[1.8%, 2.5%)`` for ``y1`` and
``[2.4%, 3.5%)`` for ``y2``, holds out the last 3,000 rows for the final evaluation and splits the
rest 90 % train / 10 % dev. Its code passes ``test_size=0.9`` to ``train_test_split``, so it
trained on 10 % of the rows; its text says 90 / 10, which is what we do. The model is a
2-10-40-30-3 ReLU MLP with 3 sigmoid outputs, batch 5,000, Adam.

Its masked loss, Keras ``categorical_crossentropy(y_true * mask, sigmoid * mask)``, treats three
independent labels as one distribution over labels: a row whose observed labels are all 0 costs
nothing, and the outputs are judged only relative to one another. Its reported "accuracy" was
Keras's categorical accuracy (argmax match), not per-label accuracy. We train three variants
side by side with one seed and report per-label accuracy on observed held-out labels:

- ``masked_bce``: taskmask's masked binary cross entropy (the default loss);
- ``seed_loss``: the seed's loss, passed as ``loss_fns={"y": seed_loss}``;
- ``fill_negative``: missing labels replaced by 0 (negative) before fitting, default loss.

Points come from ``numpy.random.default_rng(seed)`` (the seed's ``np.random.rand`` was unseeded),
so the draw differs from the seed's, not its law. Inputs are standardised (taskmask's default).

What it shows: the seed's loss leaves ``y0`` and ``y2`` far from their boundaries (see the
PNGs), masked BCE learns every label to > 0.99. Filling missing labels with 0 loses little
accuracy *here*, because the missing rows are a random 2 % scattered over the square: the
label noise it adds stays far below 50 % everywhere, so the 0.5 contour barely moves.

`run` trains, evaluates, writes ``results.json`` and one decision-boundary PNG per label, and
prints nothing; `format_table` renders its results as plain text.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from taskmask._io import write_atomically
from taskmask.api import evaluate, fit
from taskmask.functional._losses import LossTerm
from taskmask.functional._metrics import metric_as_float
from taskmask.model._model import MultiTaskModel
from taskmask.model._trunks import MLPConfig
from taskmask.predict import predict
from taskmask.tasks._task import Task

Array = npt.NDArray[Any]

N_SAMPLES = 100_000
N_HOLDOUT = 3_000
DEV_FRACTION = 0.1
LABELS = ("y0", "y1", "y2")
MISSING_VALUE = -1.0
# Missing rows per label as [start, stop) in per mille of N (the seed's 2.0 %, 1.8-2.5 %, ...).
MISSING_PER_MILLE = {"y0": (0, 20), "y1": (18, 25), "y2": (24, 35)}
HIDDEN = (10, 40, 30)
BATCH_SIZE = 5_000
LR = 1e-2
EPOCHS = 30
KERAS_EPSILON = 1e-7
VARIANTS = {
    "masked_bce": "taskmask's masked binary cross entropy (default loss)",
    "seed_loss": "the seed's Keras categorical_crossentropy(y_true * mask, sigmoid * mask)",
    "fill_negative": "missing labels filled with 0 (negative), default loss",
}
TASK = Task(name="y", kind="multilabel", labels=LABELS)


def missing_rows(n_samples: int = N_SAMPLES) -> dict[str, tuple[int, int]]:
    """Per label, the ``[start, stop)`` rows whose label is missing: ``floor(N * fraction)`` in
    exact arithmetic. (The seed's ``int(N * 0.018)`` is 1799 in floating point, not 1800.)"""
    return {
        label: (n_samples * start // 1000, n_samples * stop // 1000)
        for label, (start, stop) in MISSING_PER_MILLE.items()
    }


def make_seed_data(seed: int = 0, *, n_samples: int = N_SAMPLES) -> tuple[Array, Array]:
    """The seed's points ``(N, 2)`` and labels ``(N, 3)`` in {0, 1}, -1 where missing."""
    x = np.random.default_rng(seed).random((n_samples, 2))
    y = np.stack([x[:, 1] <= 0.5, x[:, 0] >= 0.5, x[:, 0] + x[:, 1] > 1], axis=1).astype(float)
    for j, (start, stop) in enumerate(missing_rows(n_samples).values()):
        y[start:stop, j] = MISSING_VALUE
    return x, y


def split_seed_data(x: Array, y: Array, seed: int) -> dict[str, tuple[Array, Array]]:
    """The last `N_HOLDOUT` rows as ``test``; the rest split 90 / 10 into ``train`` and ``dev``."""
    from sklearn.model_selection import train_test_split

    x_train, x_dev, y_train, y_dev = train_test_split(
        x[:-N_HOLDOUT], y[:-N_HOLDOUT], test_size=DEV_FRACTION, random_state=seed
    )
    return {
        "train": (x_train, y_train),
        "dev": (x_dev, y_dev),
        "test": (x[-N_HOLDOUT:], y[-N_HOLDOUT:]),
    }


def seed_loss(
    task: Task, input: torch.Tensor, target: torch.Tensor, observed: torch.Tensor
) -> LossTerm:
    """The seed's masked loss as a `taskmask.training.LossFn`, from logits ``input`` ``(N, k)``.

    Per row, Keras ``categorical_crossentropy(target * mask, sigmoid(input) * mask)``: ``p``
    normalised to sum 1 over the row, clipped to ``[1e-7, 1 - 1e-7]``, ``-sum(target * log p)``.
    Returns the sum over rows and ``count = N`` (the seed averages over the batch). Computed in
    log space, equal wherever Keras's float32 result is finite: once every observed sigmoid of a
    row underflows (the loss drives negative logits down without bound) ``p / sum(p)`` is 0 / 0
    and Keras, like a literal port, trains into NaN. A row with no observed label costs 0.
    """
    if input.shape != target.shape or target.shape != observed.shape:
        raise ValueError(
            f"input {tuple(input.shape)}, target {tuple(target.shape)} and observed "
            f"{tuple(observed.shape)} must have one shape (N, k)"
        )
    seen = observed.any(dim=-1, keepdim=True)  # (N, 1)
    minus_inf = torch.full((), -torch.inf, dtype=input.dtype, device=input.device)
    log_p = torch.where(observed, F.logsigmoid(input), minus_inf)  # log(sigmoid * mask)
    log_p = torch.where(seen, log_p, torch.zeros_like(log_p))  # keeps -inf - -inf out
    log_p = log_p - torch.logsumexp(log_p, dim=-1, keepdim=True)  # log(p / sum p)
    log_p = log_p.clamp(math.log(KERAS_EPSILON), math.log1p(-KERAS_EPSILON))
    target = torch.where(observed, target.to(input.dtype), torch.zeros_like(log_p))
    loss = -(target * log_p).sum(dim=-1)  # (N,), 0 for a row with nothing observed
    return LossTerm(loss.sum(), torch.tensor(float(len(input)), device=input.device))


def fill_missing_as_negative(y: Array) -> Array:
    """A copy of ``y`` with every missing (-1) label set to 0."""
    return np.where(y == MISSING_VALUE, 0.0, y)


def _accuracy(model: MultiTaskModel, x: Array, y: Array, source: str) -> dict[str, float]:
    metrics = evaluate(model, x, {"y": y}, source=source)["y"]  # observed labels only
    return {label: metric_as_float(metrics[f"accuracy/{label}"]) for label in LABELS}


def _fit_variant(name: str, x: Array, y: Array, settings: Mapping[str, Any]) -> MultiTaskModel:
    if name == "fill_negative":
        y = fill_missing_as_negative(y)
    result = fit(
        x,
        {"y": y},
        [TASK],
        trunk=MLPConfig(hidden=HIDDEN),
        loss_fns={"y": seed_loss} if name == "seed_loss" else None,
        **settings,
    )
    return result.model


def run(
    out_dir: Path, *, epochs: int | None = None, seed: int = 0, progress: bool = False
) -> dict[str, Any]:
    """Train the three variants (see the module docstring) with one ``seed``; write
    ``out_dir/results.json`` and ``decision_boundary_{y0,y1,y2}.png``; return the results.

    Per variant: held-out ``accuracy`` and ``dev_accuracy`` per label (observed labels only,
    the true labels for every variant) and training ``seconds``. ``epochs`` defaults to
    `EPOCHS`; ``progress`` shows a progress bar per variant on stderr. Prints nothing.
    The dev split is evaluated once after training, not every epoch: nothing is selected on
    it, and per-epoch validation metrics would cost more than the training itself.
    """
    epochs = EPOCHS if epochs is None else epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = split_seed_data(*make_seed_data(seed), seed=seed)
    train_settings = {
        "epochs": epochs,
        "lr": LR,
        "batch_size": BATCH_SIZE,
        "optimizer": "adam",
        "seed": seed,
        "train_metrics": False,
        "progress": progress,
    }
    models: dict[str, MultiTaskModel] = {}
    variants: dict[str, dict[str, Any]] = {}
    with _one_torch_thread():
        for name, description in VARIANTS.items():
            start = time.perf_counter()
            models[name] = _fit_variant(name, *data["train"], train_settings)
            seconds = time.perf_counter() - start
            variants[name] = {
                "accuracy": _accuracy(models[name], *data["test"], source="held-out data"),
                "dev_accuracy": _accuracy(models[name], *data["dev"], source="dev data"),
                "seconds": seconds,
                "description": description,
            }
        results = {"variants": variants, "settings": _settings(train_settings, data)}
        write_atomically(
            out_dir / "results.json", lambda tmp: tmp.write_text(json.dumps(results, indent=2))
        )
        accuracies = {name: variant["accuracy"] for name, variant in variants.items()}
        plot_decision_boundaries(models, out_dir, accuracies=accuracies)
    return results


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run torch ops on one intra-op thread, restoring the previous count afterwards.

    The model is tiny (5,000 x 40 matrices): extra threads only add synchronisation. On a busy
    2-core machine, 2 threads made the demo 6 times slower (184 s against 29 s, same results).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _settings(
    train_settings: Mapping[str, Any], data: Mapping[str, tuple[Array, Array]]
) -> dict[str, Any]:
    settings = {k: v for k, v in train_settings.items() if k not in ("progress", "train_metrics")}
    return {
        **settings,
        "hidden": list(HIDDEN),
        "n_samples": N_SAMPLES,
        "n_train": len(data["train"][0]),
        "n_dev": len(data["dev"][0]),
        "n_test": len(data["test"][0]),
        "missing_rows": {label: list(rows) for label, rows in missing_rows().items()},
    }


def format_table(results: Mapping[str, Any]) -> str:
    """Held-out accuracy per label (columns) for each variant (rows), plus training seconds.

    >>> acc = {"y0": 0.998, "y1": 0.9973, "y2": 1.0}
    >>> print(format_table({"variants": {"masked_bce": {"accuracy": acc, "seconds": 8.71}}}))
    variant         y0      y1      y2  seconds
    -------------------------------------------
    masked_bce  0.9980  0.9973  1.0000      8.7
    """
    width = max(len("variant"), *(len(name) for name in results["variants"]))
    header = f"{'variant':<{width}}  " + "  ".join(f"{label:>6}" for label in LABELS)
    lines = [header + "  seconds", "-" * (len(header) + 9)]
    for name, variant in results["variants"].items():
        cells = "  ".join(f"{variant['accuracy'][label]:6.4f}" for label in LABELS)
        lines.append(f"{name:<{width}}  {cells}  {variant['seconds']:7.1f}")
    return "\n".join(lines)


_TRUE_BOUNDARY = {  # each label's true boundary as a polyline (x0 values, x1 values)
    "y0": ([0.0, 1.0], [0.5, 0.5]),
    "y1": ([0.5, 0.5], [0.0, 1.0]),
    "y2": ([0.0, 1.0], [1.0, 0.0]),
}


def plot_decision_boundaries(
    models: Mapping[str, MultiTaskModel],
    out_dir: Path,
    *,
    accuracies: Mapping[str, Mapping[str, float]] | None = None,
    resolution: int = 201,
) -> list[Path]:
    """One PNG per label, ``decision_boundary_{label}.png``: per model a panel with P(label = 1)
    over ``[0, 1]^2``, its 0.5 contour (solid) and the true boundary (dashed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    axis = np.linspace(0.0, 1.0, resolution)
    g0, g1 = np.meshgrid(axis, axis)  # (R, R): g0 varies along columns
    grid = np.stack([g0.ravel(), g1.ravel()], axis=1)  # (R * R, 2)
    probs = {name: predict(model, grid)["y"].scores for name, model in models.items()}
    paths = []
    for j, label in enumerate(LABELS):
        fig = Figure(figsize=(4.2 * len(models), 4.0), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, len(models), squeeze=False)[0]
        for ax, (name, p) in zip(axes, probs.items(), strict=True):
            surface = p[:, j].reshape(g0.shape)
            filled = ax.contourf(g0, g1, surface, levels=np.linspace(0, 1, 11), cmap="RdBu_r")
            if surface.min() < 0.5 < surface.max():  # else contour() warns: no level in range
                ax.contour(g0, g1, surface, levels=[0.5], colors="black", linewidths=1.5)
            ax.plot(*_TRUE_BOUNDARY[label], "--", color="gold", linewidth=1.5)
            title = name if accuracies is None else f"{name} (acc {accuracies[name][label]:.4f})"
            ax.set(title=title, xlabel="x0", ylabel="x1", xlim=(0, 1), ylim=(0, 1), aspect="equal")
        fig.colorbar(filled, ax=axes, label=f"P({label} = 1)")
        fig.suptitle(f"{label}: 0.5 contour (black), true boundary (dashed)")
        path = out_dir / f"decision_boundary_{label}.png"
        write_atomically(path, partial(fig.savefig, format="png", dpi=100))
        paths.append(path)
    return paths
