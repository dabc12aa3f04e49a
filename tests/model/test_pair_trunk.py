"""The pair (siamese) trunk: one encoder with shared weights on both elements, each element's
embedding readable at ``first`` / ``second``, a config that round-trips through JSON and YAML
settings, and models with built-in heads on each element that save and load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import TypeAdapter, ValidationError

import taskmask
from taskmask import MultiTaskModel, PairConfig, PairTrunk, Task, TaskmaskError
from taskmask.model import CNN2DConfig, MLPConfig, TrunkConfig, build_trunk, split_pair


def _pairs(n: int, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn((n, 2, *shape), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("config", "element"),
    [
        (PairConfig(encoder=MLPConfig(hidden=(8, 5), dropout=0.2, norm="batch")), (6,)),
        (PairConfig(encoder=CNN2DConfig(channels=(4, 3))), (1, 8, 8)),
    ],
)
def test_both_elements_go_through_one_encoder(config: PairConfig, element: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    trunk = build_trunk(config, (2, *element))
    assert isinstance(trunk, PairTrunk)
    trunk.eval()
    x = _pairs(7, element)
    out = trunk(x)
    d = out.shape[1] // 2
    first, second = split_pair(out)
    torch.testing.assert_close(first, trunk.encoder(x[:, 0]), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(second, trunk.encoder(x[:, 1]), rtol=1e-6, atol=1e-6)
    swapped = trunk(x.flip(1))
    torch.testing.assert_close(swapped, torch.cat([second, first], 1), rtol=1e-6, atol=1e-6)
    assert out.shape == (7, 2 * d)


def test_pair_shapes_are_checked() -> None:
    with pytest.raises(TaskmaskError, match=r"\(N, 2, \*element_shape\).*\(3, 6\)"):
        build_trunk(PairConfig(), (3, 6))
    with pytest.raises(TaskmaskError, match="an MLP trunk takes"):
        build_trunk(PairConfig(), (2, 1, 6))
    trunk = build_trunk(PairConfig(encoder=MLPConfig(hidden=(4,))), (2, 6))
    with pytest.raises(TaskmaskError, match=r"\(N, 2, \.\.\.\) inputs, got \(5, 3, 6\)"):
        trunk(torch.zeros(5, 3, 6))
    with pytest.raises(TaskmaskError, match=r"even width, got \(2, 5\)"):
        split_pair(torch.zeros(2, 5))


def test_the_config_round_trips_and_is_picked_by_type() -> None:
    adapter = TypeAdapter(TrunkConfig)
    raw = {"type": "pair", "encoder": {"type": "cnn2d", "channels": [4], "padding": "valid"}}
    config = adapter.validate_python(raw)
    assert isinstance(config, PairConfig) and isinstance(config.encoder, CNN2DConfig)
    assert adapter.validate_json(adapter.dump_json(config)) == config
    assert adapter.validate_python({"type": "pair"}).encoder == MLPConfig()
    with pytest.raises(ValidationError, match="an encoder config needs type 'mlp'"):
        adapter.validate_python({"type": "pair", "encoder": {"type": "pair"}})
    with pytest.raises(ValidationError, match="'cnn2d' or 'pair'"):
        adapter.validate_python({"type": "pairs"})


def test_run_configs_accept_a_pair_trunk() -> None:
    from taskmask.app.config import ModelSettings

    spec = ModelSettings.model_validate({"trunk": {"type": "pair", "encoder": {"hidden": [8]}}})
    assert spec.trunk == PairConfig(encoder=MLPConfig(hidden=(8,)))


def test_a_head_inside_the_shared_encoder_is_refused() -> None:
    trunk = build_trunk(PairConfig(encoder=MLPConfig(hidden=(4,))), (2, 6))
    task = Task(name="t", kind="binary", attach_to="encoder.layer1")
    with pytest.raises(TaskmaskError, match=r"trunk layer 'encoder\.layer1' gives 4 rows for 2"):
        MultiTaskModel(trunk, [task], (2, 6))


def test_heads_on_each_element_train_save_and_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 2, size=(120, 2))
    x = (classes[..., None] * 2.0 - 1.0 + rng.normal(scale=0.5, size=(120, 2, 3))).astype(
        np.float32
    )
    tasks = [
        Task(name="first", kind="multiclass", attach_to="first"),
        Task(name="second", kind="multiclass", attach_to="second"),
        Task(name="same", kind="binary"),
    ]
    labels = {
        "first": classes[:, 0],
        "second": classes[:, 1],
        "same": (classes[:, 0] == classes[:, 1]).astype(float),
    }
    config = PairConfig(encoder=MLPConfig(hidden=(8,)))
    result = taskmask.fit(x, labels, tasks, trunk=config, epochs=40, lr=1e-2, progress=False)
    model = result.model
    assert model.heads["first"].in_features == 8 and model.heads["same"].in_features == 16
    metrics = taskmask.evaluate(model, x, labels)
    assert metrics["first"]["accuracy"] > 0.9 and metrics["second"]["accuracy"] > 0.9
    loaded = taskmask.load_model(taskmask.save_model(model, tmp_path / "pair"))
    assert isinstance(loaded.trunk, PairTrunk) and loaded.trunk.config == config
    for name, pred in taskmask.predict(loaded, x).items():
        np.testing.assert_array_equal(pred.scores, taskmask.predict(model, x)[name].scores)
