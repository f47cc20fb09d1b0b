"""Built Keras models are exactly the networks the cost model describes."""

import numpy as np
import pytest

import keras_cnas as cnas
from conftest import assert_costs_exact
from keras_cnas._keras import keras, tf
from keras_cnas.spaces import (
    BlockSetSpace,
    BlockType,
    ConvLayer,
    Descriptor,
    DescriptorSpace,
    FcLayer,
    Skeleton,
    Stage,
    reference,
)

# A 12-position skeleton with every default block type (grouped ones included) and a k5 type:
# the same code paths as the default 36-position space at a tenth of the build time.
COMPACT_SKELETON = Skeleton(stem_filters=16, stem_stride=2,
                            stages=(Stage(16, 1, 2), Stage(24, 2, 3), Stage(32, 2, 4), Stage(48, 1, 3)),
                            head_filters=64, activation="relu6")
COMPACT_TYPES = tuple(BlockSetSpace((8, 8, 1), 10).block_types) + (BlockType("ir_t3_k5", 3, 5),)


def _check_random_specs(space, count):
    rng = np.random.default_rng(0)
    for _ in range(count):
        assert_costs_exact(space.sample(rng))


# 30 specs of each space in the default suite; the slow suite checks 200 (the first 30 the same).
SPEC_COUNTS = [30, pytest.param(200, marks=pytest.mark.slow)]


@pytest.mark.parametrize("count", SPEC_COUNTS)
def test_params_and_madds_are_exact_for_random_descriptors(count):
    _check_random_specs(DescriptorSpace((32, 32, 3), 10), count)


@pytest.mark.parametrize("count", SPEC_COUNTS)
def test_params_and_madds_are_exact_for_random_genotypes(count):
    _check_random_specs(BlockSetSpace((32, 32, 3), 10, skeleton=COMPACT_SKELETON,
                                      block_types=COMPACT_TYPES), count)


@pytest.mark.slow
def test_params_and_madds_are_exact_for_200_random_genotypes_of_the_default_space():
    _check_random_specs(BlockSetSpace((32, 32, 3), 10), 200)


def _profiler_float_ops(model: keras.Model, op_types: list[str]) -> int:
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    from tensorflow.python.profiler import model_analyzer, option_builder

    fn = tf.function(lambda x: model(x, training=False))
    graph = convert_variables_to_constants_v2(
        fn.get_concrete_function(tf.TensorSpec([1, *model.input_shape[1:]], tf.float32))).graph
    options = option_builder.ProfileOptionBuilder.float_operation()
    options.update(output="none", account_type_regexes=op_types)
    return model_analyzer.profile(graph, options=options).total_float_ops


MAC_OPS = ["Conv2D", "DepthwiseConv2dNative", "MatMul"]


@pytest.mark.parametrize("spec", [
    reference.mobilenet_v2((224, 224, 3), 1000),
    reference.vgg19((32, 32, 3), 10),
    Descriptor((28, 28, 1), 10, (ConvLayer(8, 3, 1, 2, 2, 2, 2), ConvLayer(16, 2, 3)), (FcLayer(32),)),
], ids=["mobilenet_v2", "vgg19", "small_descriptor"])
def test_madds_agree_with_the_tensorflow_profiler(spec):
    """An independent counter: TF's profiler counts 2 FLOPs per multiply-add of the
    Conv2D, DepthwiseConv2dNative and MatMul ops, so restricted to those op types it must
    equal 2 x MAdds exactly (tolerance 0). Over all op types it also counts elementwise
    work our MAdds leave out by definition (bias adds, residual adds, the global pool's
    sum, the softmax): at most one FLOP per element of each layer's output, which bounds
    the difference.

    (Grouped convs are left out: tf_keras wraps them in a nested function the profiler
    does not look into; the Keras-kernel counter above covers them.)
    """
    keras.backend.clear_session()
    model = cnas.build_model(spec)
    madds = cnas.estimate(spec).madds
    assert _profiler_float_ops(model, MAC_OPS) == 2 * madds
    total = _profiler_float_ops(model, [".*"])
    output_elements = sum(int(np.prod(l.output_shape[1:])) for l in model.layers[1:])
    assert 0 <= total - 2 * madds <= output_elements


def test_layer_names_are_deterministic_by_position():
    spec = reference.mobilenet_v2((32, 32, 3), 10, alpha=0.35)
    names = [l.name for l in cnas.build_model(spec).layers]
    assert names[:4] == ["input", "stem_conv", "stem_bn", "stem_act"]
    assert "block_2_expand" in names and "block_2_add" not in names  # stride-2 position: no add
    assert "block_3_add" in names and names[-2:] == ["global_pool", "classifier"]
    d = Descriptor((8, 8, 1), 3, (ConvLayer(4, 3, 3, 2, 2, 2, 2),), (FcLayer(8),))
    assert [l.name for l in cnas.build_model(d).layers] == [
        "input", "conv_0", "conv_0_bn", "conv_0_relu", "conv_0_pool", "flatten", "fc_0", "classifier"]


def test_empty_positions_build_identity_or_projection_shortcut():
    skeleton = Skeleton(stem_filters=8, stem_stride=1, stages=(Stage(8, 1, 1), Stage(16, 2, 1)),
                        head_filters=0)
    space = BlockSetSpace((8, 8, 1), 4, skeleton=skeleton)
    names = [l.name for l in cnas.build_model(space.genotype([0, 0])).layers]
    assert "block_0_shortcut" not in names and "block_1_shortcut" in names
    model = cnas.build_model(space.genotype([0, 0]))
    assert model.get_layer("block_1_shortcut").strides == (2, 2)


@pytest.mark.parametrize("spec", [
    Descriptor((8, 8, 1), 3, (ConvLayer(4, 3, 3, 2, 2, 2, 2),), (FcLayer(8),)),
    BlockSetSpace((8, 8, 1), 3, skeleton=COMPACT_SKELETON, block_types=COMPACT_TYPES).genotype(
        [1, 2, 3, 0, 4, 5, 6, 7, 0, 3, 5, 1]),
], ids=["descriptor", "blockset"])
def test_built_models_train_and_round_trip_through_the_keras_format(spec, tmp_path):
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1), dtype=np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0.5).astype(np.int32) + (x[:, 0, 0, 0] > 0.5)
    model = cnas.build_model(spec)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert restored.count_params() == cnas.estimate(spec).params


def test_build_model_of_an_unknown_spec_lists_the_builders():
    spec = cnas.spaces.CategoricalSpace([2]).from_decisions([1])
    with pytest.raises(cnas.InvalidSpecError, match="no model builder.*blockset, descriptor"):
        cnas.build_model(spec)
