"""Write ``quickstart.csv`` beside this file: a small, deterministic table for the CLI quickstart.

2,000 rows, features ``x0..x3`` uniform in [0, 1], and four tasks with missing labels:

- ``toxic`` (binary, 30 % empty cells);
- ``sea`` and ``sunset`` (one multilabel task ``scene``; 20 % empty each, plus a block of -1,
  the default missing sentinel for class labels, in ``sunset``);
- ``colour`` (multiclass, class names ``red`` / ``green`` / ``blue``, 25 % empty);
- ``age`` (regression, 50 % empty).

Run ``python examples/configs/make_quickstart_data.py``; the output is the same on every run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd


def make_table(n_rows: int = 2_000, seed: int = 0) -> pd.DataFrame:
    """The quickstart table (see the module docstring)."""
    rng = np.random.default_rng(seed)
    x = rng.random((n_rows, 4))

    def with_missing(values: np.ndarray, fraction: float) -> pd.Series:
        series = pd.Series(values)
        return series.mask(rng.random(n_rows) < fraction)

    table = pd.DataFrame({f"x{j}": x[:, j].round(4) for j in range(4)})
    table["toxic"] = with_missing(x[:, 0] + 0.3 * x[:, 1] > 0.65, 0.3).astype("Int8")
    table["sea"] = with_missing(x[:, 1] > 0.5, 0.2).astype("Int8")
    sunset = with_missing(x[:, 2] + x[:, 3] > 1.0, 0.2).astype("Int8")
    sunset[: n_rows // 20] = -1
    table["sunset"] = sunset
    colours = np.array(["red", "green", "blue"], dtype=object)[x[:, :3].argmax(axis=1)]
    table["colour"] = with_missing(colours, 0.25)
    age = 30 + 10 * x[:, 0] - 5 * x[:, 3] + rng.normal(0.0, 1.0, n_rows)
    table["age"] = with_missing(age.round(2), 0.5)
    return table


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else Path(__file__).with_name("quickstart.csv")
    make_table().to_csv(out, index=False)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
