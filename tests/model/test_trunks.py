"""Built-in trunks: shapes, named blocks that heads attach to, configs that round-trip through
JSON and YAML, and CNN models that save and load to identical outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from torch import nn

from taskmask.api import fit, standardization
from taskmask.app.config import RunConfig, format_validation_error
from taskmask.errors import TaskmaskError
from taskmask.model import (
    CNN1DConfig,
    CNN2DConfig,
    ConvTrunk,
    MLPConfig,
    MultiTaskModel,
    TrunkConfig,
    build_trunk,
    conv_output_size,
    raw_outputs,
    trunk_config,
)
from taskmask.persistence import META_FILE, load_model, save_model
from taskmask.tasks import Task, task_loss

FAST = settings(max_examples=20, deadline=None)
TRUNK_CONFIG = TypeAdapter(TrunkConfig)
TASKS = (
    Task(name="activity", kind="multiclass", labels=("walk", "sit", "lie")),
    Task(name="gender", kind="binary", attach_to="block2"),
    Task(name="age", kind="regression", attach_to="block1"),
)


def _inputs(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("config", "input_shape"),
    [
        (CNN1DConfig(), (3, 400)),
        (CNN1DConfig(channels=(4,), global_pool="avg", padding="same"), (2, 7)),
        (CNN1DConfig(channels=(4, 6), pool=1, norm="batch", dropout=0.2), (1, 9)),
        (CNN2DConfig(), (3, 32, 32)),
        (CNN2DConfig(channels=(4, 5), global_pool="max", norm="layer"), (1, 5, 8)),
        (CNN2DConfig(channels=(3,), kernel_size=5, padding="valid"), (3, 5, 6)),
    ],
)
def test_conv_trunks_map_inputs_to_the_last_block_width(config, input_shape) -> None:
    trunk = build_trunk(config, input_shape)
    out = trunk.eval()(_inputs((2, *input_shape)))
    assert out.shape == (2, config.channels[-1])


def test_the_default_cnn1d_is_the_hmp_baseline() -> None:
    """Conv1D(16,5)-MaxPool(5)-Conv1D(32,5)-MaxPool(5)-Conv1D(64,5)-GlobalMaxPool."""
    trunk = build_trunk(CNN1DConfig(), (3, 400))
    layers = [m for m in trunk.modules() if not isinstance(m, nn.Sequential | ConvTrunk)]
    kinds = [type(m).__name__ for m in layers]
    assert kinds == [
        *("Conv1d", "ReLU", "MaxPool1d"),
        *("Conv1d", "ReLU", "MaxPool1d"),
        *("Conv1d", "ReLU"),
        *("AdaptiveMaxPool1d", "Flatten"),
    ]
    convs = [m for m in layers if isinstance(m, nn.Conv1d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(16, (5,)), (32, (5,)), (64, (5,))]
    assert {m.kernel_size for m in layers if isinstance(m, nn.MaxPool1d)} == {5}


@pytest.mark.parametrize(
    ("config", "input_shape"), [(CNN1DConfig(), (3, 400)), (CNN2DConfig(), (3, 16, 16))]
)
def test_conv_blocks_are_named_in_order(config, input_shape) -> None:
    trunk = build_trunk(config, input_shape)
    assert [name for name, _ in trunk.named_children()] == [
        "block1",
        "block2",
        "block3",
        "global_pool",
    ]


@FAST
@given(
    dims=st.sampled_from([1, 2]),
    n_blocks=st.integers(1, 3),
    kernel=st.sampled_from([1, 3, 5]),
    pool=st.integers(1, 3),
    padding=st.sampled_from(["valid", "same"]),
    size=st.integers(1, 40),
)
def test_conv_output_size_predicts_each_blocks_output(
    dims, n_blocks, kernel, pool, padding, size
) -> None:
    kind = CNN1DConfig if dims == 1 else CNN2DConfig
    config = kind(channels=(2,) * n_blocks, kernel_size=kernel, pool=pool, padding=padding)
    sizes = conv_output_size(size, config)
    input_shape = (1, *(size,) * dims)
    if min(sizes) < 1:
        with pytest.raises(TaskmaskError, match="too small"):
            build_trunk(config, input_shape)
        return
    trunk = build_trunk(config, input_shape)
    x = torch.zeros(1, *input_shape)
    for depth in range(1, n_blocks + 1):
        x = trunk.get_submodule(f"block{depth}")(x)
        assert x.shape[2:] == (sizes[depth - 1],) * dims


@pytest.mark.parametrize(
    ("config", "input_shape", "message"),
    [
        (CNN1DConfig(), (3, 32, 32), r"cnn1d trunk takes \(N, channels, length\)"),
        (CNN2DConfig(), (3, 32), r"cnn2d trunk takes \(N, channels, height, width\)"),
        (CNN1DConfig(), (3, 20), r"\(3, 20\) is too small .* 20 becomes \[3, 0, 0\]"),
        (MLPConfig(), (3, 20), r"MLP trunk takes \(N, n_features\).*CNN1DConfig"),
    ],
)
def test_build_trunk_rejects_inputs_that_do_not_fit(config, input_shape, message) -> None:
    with pytest.raises(TaskmaskError, match=message):
        build_trunk(config, input_shape)


def test_same_padding_needs_an_odd_kernel() -> None:
    with pytest.raises(ValidationError, match="odd kernel_size, got 4"):
        CNN2DConfig(kernel_size=4)


@pytest.mark.parametrize("config", [MLPConfig(hidden=(3,)), CNN1DConfig(pool=3), CNN2DConfig()])
def test_trunk_configs_round_trip_through_json(config) -> None:
    again = TRUNK_CONFIG.validate_json(config.model_dump_json())
    assert again == config and type(again) is type(config)


def test_a_trunk_config_without_type_is_an_mlp() -> None:
    assert TRUNK_CONFIG.validate_python({"hidden": [4]}) == MLPConfig(hidden=(4,))


def _run_config(trunk: object) -> dict[str, object]:
    return {
        "data": {"train": "train.csv", "features": ["x"]},
        "tasks": [{"name": "t", "kind": "binary"}],
        "model": {"trunk": trunk},
    }


def test_a_run_config_takes_conv_trunks_by_type() -> None:
    config = RunConfig.model_validate(_run_config({"type": "cnn2d", "channels": [8, 16]}))
    assert config.model.trunk == CNN2DConfig(channels=(8, 16))


@pytest.mark.parametrize(
    ("trunk", "expected"),
    [
        ({"type": "cnn1d", "pool": 0}, "model.trunk.pool: Input should be greater than"),
        ({"type": "cnn2d", "kernal_size": 3}, "model.trunk.kernal_size: unknown key"),
        ({"type": "cnn2d", "kernal_size": 3}, "did you mean 'kernel_size'"),
        ({"type": "cnn3d"}, "model.trunk: a trunk config needs type 'mlp' (the default)"),
        ({"hidden": [8, 0]}, "model.trunk.hidden[1]: Input should be greater"),
    ],
)
def test_run_config_errors_name_the_trunk_field(trunk, expected) -> None:
    raw = _run_config(trunk)
    with pytest.raises(ValidationError) as info:
        RunConfig.model_validate(raw)
    assert expected in format_validation_error(info.value, source="run.yaml", raw=raw)


def _model(config, input_shape: tuple[int, ...], *, seed: int = 0) -> MultiTaskModel:
    torch.manual_seed(seed)
    mean, scale = standardization(_inputs((8, *input_shape), seed) * 3 + 1, per="channel")
    return MultiTaskModel(
        build_trunk(config, input_shape), TASKS, input_shape, input_mean=mean, input_scale=scale
    )


CNN_CASES = [
    pytest.param(CNN1DConfig(channels=(4, 6, 8), norm="batch", dropout=0.1), (3, 200), id="1d"),
    pytest.param(CNN2DConfig(channels=(4, 6, 8), norm="batch"), (3, 12, 10), id="2d"),
]


@pytest.mark.parametrize(("config", "input_shape"), CNN_CASES)
def test_heads_attach_to_named_conv_blocks(config, input_shape) -> None:
    model = _model(config, input_shape)
    x = _inputs((5, *input_shape), 1)
    outputs = model(x)
    assert {name: tuple(out.shape) for name, out in outputs.items()} == {
        "activity": (5, 3),
        "gender": (5, 1),
        "age": (5, 1),
    }
    block2 = model.trunk.get_submodule("block2")(model.trunk.get_submodule("block1")(x))
    # the head reads block2's feature map reduced to a vector: flattened, or globally pooled
    assert model.heads["gender"].in_features in {block2.shape[1], block2[0].numel()}


@pytest.mark.parametrize(("config", "input_shape"), CNN_CASES)
def test_a_head_on_block2_trains_only_blocks_1_and_2(config, input_shape) -> None:
    model = _model(config, input_shape)
    x = _inputs((6, *input_shape), 2)
    target = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])[:, None]
    observed = torch.ones_like(target, dtype=torch.bool)
    loss = task_loss(model.task("gender"), model(x)["gender"], target, observed)
    loss.mean().backward()
    grads = {n: p.grad for n, p in model.trunk.named_parameters()}
    assert all(g is None or torch.all(g == 0) for n, g in grads.items() if n.startswith("block3"))
    for block in ("block1", "block2"):
        assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if block in n)


@pytest.mark.parametrize(("config", "input_shape"), CNN_CASES)
def test_conv_models_save_and_load_to_identical_outputs(tmp_path: Path, config, input_shape):
    model = _model(config, input_shape)
    model.train()
    for seed in range(3):  # move the batch-norm running statistics away from their start
        model(_inputs((8, *input_shape), seed))
    path = save_model(model, tmp_path / "model")
    meta = json.loads((path / META_FILE).read_text())
    assert meta["trunk"]["type"] == config.type
    loaded = load_model(path)
    assert isinstance(loaded.trunk, ConvTrunk) and trunk_config(loaded.trunk) == config
    assert torch.equal(loaded.input_mean, model.input_mean)
    x = _inputs((7, *input_shape), 9)
    expected, got = raw_outputs(model, x), raw_outputs(loaded, x)
    for name in model.task_names:
        assert torch.equal(expected[name], got[name]), name


def test_fit_trains_a_cnn_trunk_module_that_saves_and_loads(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(24, 2, 30)).astype(np.float32)
    labels = {"gender": (inputs[:, 0].mean(1) > 0).astype(float), "age": inputs[:, 1].std(1)}
    tasks = [
        Task(name="gender", kind="binary", attach_to="block1"),
        Task(name="age", kind="regression"),
    ]
    trunk = build_trunk(CNN1DConfig(channels=(4, 4), kernel_size=3, pool=2), (2, 30))
    options = {"epochs": 1, "batch_size": 8, "progress": False, "validation_split": 0.0}
    model = fit(inputs, labels, tasks, trunk=trunk, **options).model
    loaded = load_model(save_model(model, tmp_path / "model"))
    x = torch.from_numpy(inputs)
    for name, out in raw_outputs(model, x).items():
        assert torch.equal(out, raw_outputs(loaded, x)[name]), name
