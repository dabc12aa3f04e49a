"""`Trainer.fit` trains grouped (fused) heads and hands back per-task head parameters."""

from __future__ import annotations

import torch

from taskmask import MLPConfig, MLPTrunk, MultiTaskModel, Task, TrainConfig, Trainer
from taskmask.data import MultiTaskData
from taskmask.functional import EncodedLabels


def _data(n: int, seed: int) -> MultiTaskData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    rule = (x[:, :1] > 0).float()
    labels = {
        name: EncodedLabels(rule if name != "c" else 1 - rule, torch.rand(n, 1, generator=g) < 0.5)
        for name in ("a", "b", "c")
    }
    return MultiTaskData(x, labels)


def test_fit_trains_fused_heads_and_restores_per_task_parameters() -> None:
    torch.manual_seed(0)
    tasks = [Task(name=n, kind="binary") for n in ("a", "b", "c")]
    model = MultiTaskModel(MLPTrunk(4, MLPConfig(hidden=(8,))), tasks, (4,))
    keys = list(model.state_dict())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainConfig(epochs=15, batch_size=32, lr=1e-2, progress=False, device="cpu")
    history = Trainer(config).fit(model, _data(256, 0))
    assert model.fused is None and list(model.state_dict()) == keys
    for name in ("a", "b", "c"):
        head = model.heads[name]
        assert isinstance(head.weight, torch.nn.Parameter) and head.weight.grad is not None
        assert not torch.equal(head.weight, before[f"heads.{name}.weight"])
    assert history[-1]["train/loss"] < 0.6 * history[0]["train/loss"]
    probs = torch.sigmoid(torch.cat([model(_data(64, 1).inputs)[n] for n in ("a", "c")], 1))
    assert ((probs[:, 0] > 0.5) != (probs[:, 1] > 0.5)).float().mean() > 0.9  # opposite rules
