"""The network: trunks (MLP, CNNs, pair) and `MultiTaskModel` (a trunk plus one head per task,
the linear heads at one attach point grouped into one matmul)."""

from taskmask.model._heads import HeadGroup, HeadLayout, HeadOutputs
from taskmask.model._model import MultiTaskModel, raw_outputs
from taskmask.model._trunks import (
    Activation,
    CNN1DConfig,
    CNN2DConfig,
    ConvTrunk,
    EncoderConfig,
    MLPConfig,
    MLPTrunk,
    Norm,
    PairConfig,
    PairTrunk,
    TrunkConfig,
    Width,
    build_trunk,
    conv_output_size,
    split_pair,
    trunk_config,
)

__all__ = [
    "Activation",
    "CNN1DConfig",
    "CNN2DConfig",
    "ConvTrunk",
    "EncoderConfig",
    "HeadGroup",
    "HeadLayout",
    "HeadOutputs",
    "MLPConfig",
    "MLPTrunk",
    "MultiTaskModel",
    "Norm",
    "PairConfig",
    "PairTrunk",
    "TrunkConfig",
    "Width",
    "build_trunk",
    "conv_output_size",
    "raw_outputs",
    "split_pair",
    "trunk_config",
]
