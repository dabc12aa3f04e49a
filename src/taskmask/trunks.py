"""Built-in trunks, described by serialisable configs so that a saved model can be rebuilt.

Any ``nn.Module`` works as a trunk; a built-in one can be rebuilt from its JSON config when a
model is loaded, a user module must be passed to `taskmask.load_model` again.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

Activation = Literal["relu", "gelu", "tanh", "silu", "leaky_relu", "elu"]
Norm = Literal["batch", "layer"]

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
    hidden: tuple[Annotated[int, Field(ge=1)], ...] = Field(default=(64, 64), min_length=1)
    activation: Activation = "relu"
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    norm: Norm | None = None


TrunkConfig = MLPConfig


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


def build_trunk(config: TrunkConfig, input_shape: tuple[int, ...]) -> nn.Module:
    """Build a built-in trunk for inputs of shape ``(N, *input_shape)``."""
    if len(input_shape) != 1:
        raise ValueError(
            f"an MLP trunk takes (N, n_features) inputs, got input shape {input_shape}"
        )
    return MLPTrunk(input_shape[0], config)
