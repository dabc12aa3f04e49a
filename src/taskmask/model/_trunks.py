"""Built-in trunks, described by serialisable configs so that a saved model can be rebuilt.

An MLP for ``(N, n_features)`` rows, a 1-D CNN for ``(N, channels, length)`` series, a 2-D
CNN for ``(N, channels, height, width)`` images, and a siamese trunk for pairs
``(N, 2, *element_shape)`` that runs one of those on both elements (`PairConfig`). Any
``nn.Module`` works as a trunk; a built-in one can be rebuilt from its JSON config when a model
is loaded, a user module must be passed to `taskmask.load_model` again.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator
from torch import nn

from taskmask.errors import TaskmaskError

Activation = Literal["relu", "gelu", "tanh", "silu", "leaky_relu", "elu"]
Norm = Literal["batch", "layer"]
Width = Annotated[int, Field(ge=1)]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
}


class MLPConfig(BaseModel):
    """A multilayer perceptron: ``hidden`` layer widths, each Linear -> [norm] -> act -> [dropout].

    Its blocks are named ``layer1``, ``layer2``, ...: a head can attach to any of them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["mlp"] = "mlp"
    hidden: tuple[Width, ...] = Field(default=(64, 64), min_length=1)
    activation: Activation = "relu"
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    norm: Norm | None = None


class _ConvConfig(BaseModel):
    """Fields shared by the 1-D and 2-D CNN configs (see `CNN1DConfig`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["cnn1d", "cnn2d"]
    channels: tuple[Width, ...] = Field(min_length=1)
    kernel_size: Width
    pool: Width
    global_pool: Literal["max", "avg"]
    padding: Literal["valid", "same"]
    activation: Activation = "relu"
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    norm: Norm | None = None

    @model_validator(mode="after")
    def _odd_kernel_for_same(self) -> _ConvConfig:
        if self.padding == "same" and self.kernel_size % 2 == 0:
            raise ValueError(f"padding 'same' needs an odd kernel_size, got {self.kernel_size}")
        return self


class CNN1DConfig(_ConvConfig):
    """A 1-D CNN for series ``(N, channels, length)``.

    Block ``k`` is Conv1d(channels[k-1], kernel_size) -> [norm] -> act -> [dropout], then a max
    pool of size and stride ``pool`` after every block but the last (``pool=1``: none); the
    last block's output is pooled over time (``global_pool``) to ``(N, channels[-1])``.
    ``padding="valid"`` shrinks the length by ``kernel_size - 1`` per block (Keras' default);
    ``"same"`` keeps it. ``norm="layer"`` is GroupNorm with one group (over channels and time).
    The defaults are Conv1D(16, 5)-MaxPool(5)-Conv1D(32, 5)-MaxPool(5)-Conv1D(64, 5)-GlobalMax.
    Blocks are named ``block1``, ``block2``, ...: a head can attach to any of them.
    """

    type: Literal["cnn1d"] = "cnn1d"
    channels: tuple[Width, ...] = Field(default=(16, 32, 64), min_length=1)
    kernel_size: Width = 5
    pool: Width = 5
    global_pool: Literal["max", "avg"] = "max"
    padding: Literal["valid", "same"] = "valid"


class CNN2DConfig(_ConvConfig):
    """A 2-D CNN for images ``(N, channels, height, width)``: as `CNN1DConfig` with square
    Conv2d kernels and square max pools; the defaults are three 3x3 ``"same"`` blocks of 32, 64
    and 128 channels, 2x2 max pools between them and a global average pool at the end."""

    type: Literal["cnn2d"] = "cnn2d"
    channels: tuple[Width, ...] = Field(default=(32, 64, 128), min_length=1)
    kernel_size: Width = 3
    pool: Width = 2
    global_pool: Literal["max", "avg"] = "avg"
    padding: Literal["valid", "same"] = "same"


def _trunk_type(value: Any) -> Any:
    """The tag of a trunk config: its ``type``; a mapping without one is an MLP config."""
    if isinstance(value, dict):
        return value.get("type", "mlp")
    return getattr(value, "type", None)


EncoderConfig = Annotated[
    Annotated[MLPConfig, Tag("mlp")]
    | Annotated[CNN1DConfig, Tag("cnn1d")]
    | Annotated[CNN2DConfig, Tag("cnn2d")],
    Discriminator(
        _trunk_type,
        custom_error_type="trunk_type",
        custom_error_message="an encoder config needs type 'mlp' (the default), 'cnn1d' or 'cnn2d'",
    ),
]
"""The trunk config a `PairConfig` runs on each element: an MLP, 1-D or 2-D CNN config."""


class PairConfig(BaseModel):
    """A siamese trunk for pairs ``(N, 2, *element_shape)``: one ``encoder`` (shared weights)
    embeds both elements, and the output is the two embeddings side by side, ``(N, 2 d)``
    (`split_pair` cuts it back). Submodules ``first`` and ``second`` output each element's
    embedding ``(N, d)``: attach a head there to read one element (e.g. a class per element).
    The encoder runs once on the ``2N`` elements, so a head cannot attach inside it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["pair"] = "pair"
    encoder: EncoderConfig = Field(default_factory=MLPConfig)


TrunkConfig = Annotated[
    Annotated[MLPConfig, Tag("mlp")]
    | Annotated[CNN1DConfig, Tag("cnn1d")]
    | Annotated[CNN2DConfig, Tag("cnn2d")]
    | Annotated[PairConfig, Tag("pair")],
    Discriminator(
        _trunk_type,
        custom_error_type="trunk_type",
        custom_error_message=(
            "a trunk config needs type 'mlp' (the default), 'cnn1d', 'cnn2d' or 'pair'"
        ),
    ),
]
"""Any built-in trunk config; in JSON or YAML the ``type`` key picks one (default ``"mlp"``)."""


class MLPTrunk(nn.Module):
    """``(N, n_features) -> (N, hidden[-1])``; blocks ``layer1..layerL`` are named submodules."""

    def __init__(self, n_features: int, config: MLPConfig) -> None:
        super().__init__()
        if n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        if any(width < 1 for width in config.hidden):
            raise ValueError(f"hidden layer widths must be >= 1, got {list(config.hidden)}")
        self.config = config
        width = n_features
        for depth, out in enumerate(config.hidden, start=1):
            block: list[nn.Module] = [nn.Linear(width, out)]
            if config.norm == "batch":
                block.append(nn.BatchNorm1d(out))
            elif config.norm == "layer":
                block.append(nn.LayerNorm(out))
            block.append(_ACTIVATIONS[config.activation]())
            if config.dropout > 0:
                block.append(nn.Dropout(config.dropout))
            self.add_module(f"layer{depth}", nn.Sequential(*block))
            width = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.children():
            x = block(x)
        return x


_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_BATCH_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
_MAX_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d}
_GLOBAL_POOL = {
    (1, "max"): nn.AdaptiveMaxPool1d,
    (1, "avg"): nn.AdaptiveAvgPool1d,
    (2, "max"): nn.AdaptiveMaxPool2d,
    (2, "avg"): nn.AdaptiveAvgPool2d,
}


class ConvTrunk(nn.Module):
    """``(N, in_channels, *spatial) -> (N, channels[-1])`` for a `CNN1DConfig` (one spatial
    dimension) or a `CNN2DConfig` (two). Blocks ``block1..blockK`` are named submodules whose
    outputs are feature maps ``(N, channels[k-1], *spatial_k)``; ``global_pool`` follows them.
    A head attached to a block reads its map as `MultiTaskModel` turns attached outputs into
    vectors (see `MultiTaskModel`).
    """

    def __init__(self, in_channels: int, config: CNN1DConfig | CNN2DConfig) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        self.config = config
        dims = 1 if isinstance(config, CNN1DConfig) else 2
        width = in_channels
        last = len(config.channels)
        for depth, out in enumerate(config.channels, start=1):
            block: list[nn.Module] = [
                _CONV[dims](width, out, config.kernel_size, padding=config.padding)
            ]
            if config.norm == "batch":
                block.append(_BATCH_NORM[dims](out))
            elif config.norm == "layer":
                block.append(nn.GroupNorm(1, out))
            block.append(_ACTIVATIONS[config.activation]())
            if config.dropout > 0:
                block.append(nn.Dropout(config.dropout))
            if depth < last and config.pool > 1:
                block.append(_MAX_POOL[dims](config.pool))
            self.add_module(f"block{depth}", nn.Sequential(*block))
            width = out
        self.global_pool = nn.Sequential(_GLOBAL_POOL[dims, config.global_pool](1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.children():  # block1 .. blockK, then global_pool
            x = block(x)
        return x


class PairTrunk(nn.Module):
    """``(N, 2, *element_shape) -> (N, 2 d)``: ``[encoder(x[:, 0]) | encoder(x[:, 1])]``, the
    encoder being one built-in trunk for ``element_shape`` applied to both elements (one call on
    the ``2N`` elements stacked). ``first`` and ``second`` are identity submodules that output
    each element's embedding ``(N, d)``, for heads to attach to."""

    def __init__(self, element_shape: tuple[int, ...], config: PairConfig) -> None:
        super().__init__()
        self.config = config
        self.element_shape = tuple(element_shape)
        self.encoder = build_trunk(config.encoder, self.element_shape)
        self.first = nn.Identity()
        self.second = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 3 or x.shape[1] != 2:
            raise TaskmaskError(f"a pair trunk takes (N, 2, ...) inputs, got {tuple(x.shape)}")
        n = x.shape[0]
        embedded = self.encoder(x.flatten(0, 1)).reshape(n, 2, -1)  # (N, 2, d)
        return torch.cat([self.first(embedded[:, 0]), self.second(embedded[:, 1])], dim=1)


def split_pair(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A `PairTrunk`'s output ``(N, 2 d)`` as the two embeddings ``(N, d)``, ``(N, d)``."""
    if features.ndim != 2 or features.shape[1] % 2:
        raise TaskmaskError(
            f"expected pair features (N, 2 d) with an even width, got {tuple(features.shape)}"
        )
    first, second = features.chunk(2, dim=1)
    return first, second


def conv_output_size(size: int, config: CNN1DConfig | CNN2DConfig) -> list[int]:
    """The spatial size along one axis after each block, for an input of ``size`` there;
    a size of 0 means the input is too small for the config."""
    sizes = []
    for depth in range(1, len(config.channels) + 1):
        if config.padding == "valid":
            size = max(size - (config.kernel_size - 1), 0)
        if depth < len(config.channels):
            size //= config.pool
        sizes.append(size)
    return sizes


def _check_spatial(config: CNN1DConfig | CNN2DConfig, input_shape: tuple[int, ...]) -> None:
    dims = 1 if isinstance(config, CNN1DConfig) else 2
    layout = "(N, channels, length)" if dims == 1 else "(N, channels, height, width)"
    if len(input_shape) != dims + 1:
        raise TaskmaskError(
            f"a {config.type} trunk takes {layout} inputs, got input shape {input_shape}"
        )
    for size in input_shape[1:]:
        sizes = conv_output_size(size, config)
        if min(sizes) < 1:
            raise TaskmaskError(
                f"input shape {input_shape} is too small for the {config.type} trunk: a size "
                f"of {size} becomes {sizes} after its blocks (kernel_size {config.kernel_size}, "
                f"pool {config.pool}, padding {config.padding!r})"
            )


def build_trunk(config: TrunkConfig, input_shape: tuple[int, ...]) -> nn.Module:
    """Build a built-in trunk for inputs of shape ``(N, *input_shape)``; `TaskmaskError` when
    the shape does not fit the trunk."""
    input_shape = tuple(input_shape)
    if isinstance(config, PairConfig):
        if len(input_shape) < 2 or input_shape[0] != 2:
            raise TaskmaskError(
                f"a pair trunk takes (N, 2, *element_shape) inputs, got input shape {input_shape}"
            )
        return PairTrunk(input_shape[1:], config)
    if isinstance(config, MLPConfig):
        if len(input_shape) != 1:
            raise TaskmaskError(
                f"an MLP trunk takes (N, n_features) inputs, got input shape {input_shape}; "
                "use CNN1DConfig for (N, channels, length) or CNN2DConfig for images"
            )
        return MLPTrunk(input_shape[0], config)
    _check_spatial(config, input_shape)
    return ConvTrunk(input_shape[0], config)


def trunk_config(trunk: nn.Module) -> TrunkConfig | None:
    """The config a built-in trunk was made from; ``None`` for any other module."""
    return trunk.config if isinstance(trunk, MLPTrunk | ConvTrunk | PairTrunk) else None
