"""Seed 000's own Keras model, fixed by one line: its masked loss against taskmask.keras's.

Seed 000 (the blog post "How to Multi-task learning with missing labels in Keras") trains a
2-10-40-30-3 ReLU network with three sigmoid outputs on points of the unit square, labels
missing as -1, with

    model.compile(loss=masked_loss_function, optimizer="adam", metrics=["accuracy"])

where ``masked_loss_function`` is ``categorical_crossentropy(y_true * mask, y_pred * mask)``.
That treats three independent labels as one distribution over labels, and ``"accuracy"``
resolves to Keras's categorical (argmax) accuracy over every row, masked entries included.
The fix is one line:

    model.compile(loss=MaskedBinaryCrossentropy(), optimizer="adam", metrics=["accuracy"])

This script trains the same model, with the same seed, both ways, and reports held-out
accuracy per label on observed labels (`taskmask.keras.MaskedBinaryAccuracy`) next to what the
seed's ``"accuracy"`` shows. The data are the seed's, drawn by `taskmask.app.demo.make_seed_data`
(seeded) and split as the seed's text says: the last 3,000 rows held out, the rest 90 % train
and 10 % dev. Adam keeps Keras's default learning rate; the seed's 2,000 epochs become
`EPOCHS`, so the run takes one to two minutes on two CPU cores.

    KERAS_BACKEND=torch python examples/keras_seed000.py            # the full data, 100 epochs
    KERAS_BACKEND=torch python examples/keras_seed000.py --smoke    # seconds, for CI

Any Keras backend works; without ``KERAS_BACKEND`` this script picks torch.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is first imported

import keras
import numpy as np
import torch
from keras import layers, ops

from taskmask.app.demo import LABELS, make_seed_data, split_seed_data
from taskmask.keras import MaskedBinaryAccuracy, MaskedBinaryCrossentropy

EPOCHS = 100
SMOKE_EPOCHS = 2
SMOKE_SAMPLES = 5_000  # 3,000 of them held out, as in the seed
BATCH_SIZE = 5_000
mask_value = -1


def masked_loss_function(y_true: Any, y_pred: Any) -> Any:
    """The seed's loss, verbatim but for Keras 3's names (``K.`` becomes ``keras.ops``)."""
    mask = ops.cast(ops.not_equal(y_true, mask_value), keras.backend.floatx())
    return ops.categorical_crossentropy(y_true * mask, y_pred * mask)


LOSSES = {
    "seed_loss": masked_loss_function,  # the seed's
    "masked_bce": MaskedBinaryCrossentropy(),  # the one-line fix (mask_value=-1 by default)
}


def seed_model() -> keras.Model:
    """The seed's model; Keras 3 takes ``Input`` where Keras 2 took ``input_dim=2``."""
    return keras.Sequential(
        [
            keras.Input(shape=(2,)),
            layers.Dense(10, activation="relu"),
            layers.Dense(40, activation="relu"),
            layers.Dense(30, activation="relu"),
            layers.Dense(3, activation="sigmoid"),
        ]
    )


def train_and_score(
    loss: Any, data: dict[str, tuple[np.ndarray, np.ndarray]], *, epochs: int, seed: int
) -> dict[str, Any]:
    """Fit one model; held-out and dev accuracy per label on observed labels, and the seed's
    ``"accuracy"`` (categorical, every row) on the held-out rows."""
    keras.utils.set_random_seed(seed)
    model = seed_model()
    model.compile(loss=loss, optimizer="adam", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(*data["train"], epochs=epochs, batch_size=BATCH_SIZE, verbose=0)
    seconds = time.perf_counter() - start
    scores: dict[str, Any] = {"seconds": seconds}
    for part in ("test", "dev"):
        x, y = data[part]
        accuracy = MaskedBinaryAccuracy(average=None)
        accuracy.update_state(y, model.predict(x, batch_size=BATCH_SIZE, verbose=0))
        scores[part] = [float(v) for v in ops.convert_to_numpy(accuracy.result())]
    evaluated = model.evaluate(*data["test"], batch_size=BATCH_SIZE, verbose=0, return_dict=True)
    scores["seed_accuracy"] = float(evaluated["accuracy"])
    return scores


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """Held-out accuracy per label (observed labels only), the seed's metric, and seconds."""
    header = f"{'loss':<11}" + "".join(f"{label:>8}" for label in LABELS)
    header += f"{'seed acc':>10}{'seconds':>9}"
    lines = [header, "-" * len(header)]
    for name, scores in results.items():
        cells = "".join(f"{value:8.4f}" for value in scores["test"])
        lines.append(f"{name:<11}{cells}{scores['seed_accuracy']:10.4f}{scores['seconds']:9.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="5,000 points, 2 epochs (seconds)")
    parser.add_argument("--epochs", type=int, default=None, help=f"default {EPOCHS}")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # a tiny model: more threads only add synchronisation
    n_samples = SMOKE_SAMPLES if args.smoke else None
    epochs = args.epochs or (SMOKE_EPOCHS if args.smoke else EPOCHS)
    x, y = make_seed_data(args.seed, **({"n_samples": n_samples} if n_samples else {}))
    data = split_seed_data(x, y, seed=args.seed)
    print(
        f"backend {keras.backend.backend()}, keras {keras.__version__}: {len(data['train'][0])} "
        f"train / {len(data['dev'][0])} dev / {len(data['test'][0])} held-out rows, "
        f"{epochs} epochs, batch {BATCH_SIZE}, seed {args.seed}"
    )
    results = {
        name: train_and_score(loss, data, epochs=epochs, seed=args.seed)
        for name, loss in LOSSES.items()
    }
    print("held-out accuracy per label, observed labels only")
    print(format_table(results))
    for name, scores in results.items():
        dev = ", ".join(
            f"{label} {value:.4f}" for label, value in zip(LABELS, scores["dev"], strict=True)
        )
        print(f"dev accuracy, {name}: {dev}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
