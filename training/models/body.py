"""Full-body model (paper Sec. II-C3): a 3D ResNet over 16x128x128 crops, with the paper's regression head.

Written here rather than imported (the authors used keras-resnet3d, which targets Keras 2): a 7x7x7 stride-2
stem and a 3x3x3 stride-2 max-pool, then four stages of basic residual blocks (64, 128, 256, 512 filters
times ``base_filters / 64``; every stage after the first halves time and space), global average pooling,
and Dense 512 ReLU -> Dense 32 ReLU -> Dense 1 (linear) in place of the classifier.
Depth 18 (2, 2, 2, 2 blocks) is the default; 10 and 34 are the other basic-block ResNets.
"""

from __future__ import annotations

import keras
from keras import layers

from shared.modalities.body import INPUT_BODY

BLOCKS: dict[int, tuple[int, int, int, int]] = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def _conv_bn(x: keras.KerasTensor, filters: int, kernel: int, strides: int, bn_momentum: float) -> keras.KerasTensor:
    x = layers.Conv3D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    return layers.BatchNormalization(momentum=bn_momentum)(x)


def basic_block(x: keras.KerasTensor, filters: int, strides: int, bn_momentum: float) -> keras.KerasTensor:
    """Two 3x3x3 convolutions with a shortcut (a strided 1x1x1 projection when the shape changes)."""
    shortcut = x
    y = layers.ReLU()(_conv_bn(x, filters, 3, strides, bn_momentum))
    y = _conv_bn(y, filters, 3, 1, bn_momentum)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, strides, bn_momentum)
    return layers.ReLU()(layers.Add()([y, shortcut]))


def build_model(input_shapes: dict[str, tuple[int, ...]], n_subjects: int, *, depth: int = 18,
                base_filters: int = 64, head: tuple[int, ...] = (512, 32), bn_momentum: float = 0.99) -> keras.Model:
    """ResNet-``depth``-3D (``n_subjects`` unused: the paper's body model has no subject vector);
    ``bn_momentum`` as in :func:`training.models.face.build_model`."""
    if depth not in BLOCKS:
        raise ValueError(f"depth must be one of {sorted(BLOCKS)}, got {depth}")
    frames = keras.Input(shape=tuple(input_shapes[INPUT_BODY]), name=INPUT_BODY)
    x = layers.Reshape((*input_shapes[INPUT_BODY], 1))(frames)
    x = layers.ReLU()(_conv_bn(x, base_filters, 7, 2, bn_momentum))
    x = layers.MaxPooling3D(3, strides=2, padding="same")(x)
    for stage, blocks in enumerate(BLOCKS[depth]):
        filters = base_filters * 2**stage
        for block in range(blocks):
            x = basic_block(x, filters, 2 if stage > 0 and block == 0 else 1, bn_momentum)
    x = layers.GlobalAveragePooling3D()(x)
    for units in head:
        x = layers.Dense(units, activation="relu")(x)
    out = layers.Dense(1, name="valence")(x)
    return keras.Model(inputs={INPUT_BODY: frames}, outputs=out, name="body")
