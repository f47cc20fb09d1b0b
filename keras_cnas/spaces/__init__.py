"""Search spaces: specs as immutable JSON values, sampling, validation, mutation.

Pure Python + NumPy: importing this package never imports TensorFlow.
"""

from keras_cnas.spaces import reference
from keras_cnas.spaces.base import SPACES, SPEC_TYPES, Mutation, Space, Spec, spec_from_dict, spec_from_json
from keras_cnas.spaces.blockset import (
    DEFAULT_BLOCK_TYPES,
    BlockSetGenotype,
    BlockSetSpace,
    BlockType,
    Position,
    Skeleton,
    Stage,
)
from keras_cnas.spaces.categorical import CategoricalSpace, CategoricalSpec
from keras_cnas.spaces.descriptor import ConvLayer, Coordinate, Descriptor, DescriptorSpace, FcLayer, Skip
from keras_cnas.spaces.resnet import ResNetSpec
from keras_cnas.spaces.hyper import HyperParameters, HyperSpace, HyperSpec
from keras_cnas.spaces.enas_cell import Block, EnasCell, EnasCellSpace, EnasNet

__all__ = [
    "DEFAULT_BLOCK_TYPES", "SPACES", "SPEC_TYPES", "Block", "BlockSetGenotype", "BlockSetSpace",
    "BlockType", "CategoricalSpace", "CategoricalSpec", "ConvLayer", "Coordinate", "Descriptor",
    "DescriptorSpace", "EnasCell", "EnasCellSpace", "EnasNet", "FcLayer", "HyperParameters", "HyperSpace", "HyperSpec", "Mutation", "Position",
    "ResNetSpec", "Skeleton", "Skip", "Space", "Spec", "Stage", "reference", "spec_from_dict", "spec_from_json",
]
