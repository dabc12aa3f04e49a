"""Small Parquet data sets for the streaming tests, and a job they run under torchrun.

    python -m torch.distributed.run --nproc_per_node=2 tests/streaming_script.py DATA OUT

streams the Parquet files in DATA on every rank: writes ``OUT/rows-rankR.json`` (the row ids
of each piece of two epochs) and ``OUT/full-rankR.safetensors`` (the weights after 3 epochs
of full-batch training on the stream, whose global batch is every row).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import save_file

from taskmask import MLPConfig, MLPTrunk, MultiTaskData, MultiTaskModel, Task, make_data
from taskmask.data import ParquetSource
from taskmask.training import BatchLoss, TrainConfig, Trainer

FEATURES = ["id", "x0", "x1", "x2"]
TASKS = (
    Task(name="b", kind="binary"),
    Task(name="m", kind="multilabel"),
    Task(name="c", kind="multiclass"),
    Task(name="r", kind="regression"),
)
TARGETS = {"m": ["m0", "m1"]}
FULL_BATCH = TrainConfig(epochs=3, batch_size=100_000, lr=1e-2, progress=False, device="cpu")


def table(n_rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """Features (``id`` is the row number) and labels with nulls (about 40 %), blank class
    names and the binary sentinel -1, all of which mean "missing"."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, 3))

    def holes(values: np.ndarray) -> pd.Series:
        return pd.Series(values).mask(rng.random(n_rows) < 0.4)

    frame = pd.DataFrame({"id": np.arange(n_rows, dtype=np.int64)})
    for j in range(3):
        frame[f"x{j}"] = x[:, j].astype(np.float32)
    frame["b"] = holes(np.where(rng.random(n_rows) < 0.05, -1, x[:, 0] > 0)).astype("Int8")
    frame["m0"] = holes((x[:, 1] > 0).astype(float))
    frame["m1"] = holes((x[:, 2] > 0).astype(float))
    colour = np.array(["red", "green", "blue"])[x.argmax(axis=1)]
    frame["c"] = holes(np.where(rng.random(n_rows) < 0.05, " ", colour))
    frame["r"] = holes(2.0 * x[:, 0] - x[:, 1] + 30.0)
    return frame


def write_parts(frame: pd.DataFrame, directory: Path, n_files: int, row_group_size: int) -> None:
    """``frame`` in order as ``part-0.parquet ..``, each in row groups of ``row_group_size``."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(np.arange(len(frame)), n_files)):
        rows = pa.Table.from_pandas(frame.iloc[part], preserve_index=False)
        pq.write_table(rows, directory / f"part-{i}.parquet", row_group_size=row_group_size)


def source(path: Path, **options: int) -> ParquetSource:
    return ParquetSource(path, features=FEATURES, tasks=TASKS, targets=TARGETS, **options)


def in_memory(frame: pd.DataFrame, tasks: tuple[Task, ...]) -> MultiTaskData:
    """The same rows through the in-memory path (pandas columns into `make_data`)."""
    labels = {"b": frame["b"], "m": frame[["m0", "m1"]], "c": frame["c"], "r": frame["r"]}
    return make_data(frame[FEATURES], labels, tasks, feature_names=FEATURES)


def model(tasks: tuple[Task, ...]) -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(MLPTrunk(len(FEATURES), MLPConfig(hidden=(8,))), tasks, (4,))


def main(data: str, out: str) -> int:
    from taskmask import _world as distributed

    torch.set_num_threads(1)
    world = distributed.setup("cpu")
    streamed = source(Path(data), shuffle_buffer=16, read_rows=7)
    plan = BatchLoss(
        streamed.tasks, loss_fns={}, pos_weights={t.name: None for t in TASKS}, device=world.device
    )
    batches = streamed.batches(plan.tasks, 10, world, pack=plan.pack)
    generator = torch.Generator().manual_seed(0)
    epochs = [[b.inputs[:, 0].long().tolist() for b in batches.epoch(generator)] for _ in range(2)]
    path = Path(out)
    (path / f"rows-rank{world.rank}.json").write_text(json.dumps(epochs))
    net = model(streamed.tasks)
    Trainer(FULL_BATCH).fit(net, streamed)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(path / f"full-rank{world.rank}.safetensors"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
