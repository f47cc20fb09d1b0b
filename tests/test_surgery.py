"""Channel surgery: the channel graph, shrink / expand against the masked original, the
analytic model costs against count_params() and the spec estimators, and refusals."""

import numpy as np
import pytest

import keras_cnas as cnas
from keras_cnas._keras import keras
from keras_cnas.compression import (
    ChannelGraph,
    UnsupportedModelError,
    expand,
    graph_costs,
    mask_channels,
    model_costs,
    select_top,
    shrink,
)
from keras_cnas.spaces import BlockSetSpace, DescriptorSpace, reference

L = keras.layers


def randomize(model, rng):
    """Weights at a scale that keeps activations O(1), and BatchNorm statistics and affine
    parameters far from their defaults (so that a wrongly sliced BN shows)."""
    weights = []
    for w in model.weights:
        shape = tuple(w.shape)
        if "kernel" in w.name:
            fan_in = int(np.prod(shape[:-1])) if "depthwise" not in w.name else int(np.prod(shape[:2]))
            value = rng.normal(0, 1 / np.sqrt(max(fan_in, 1)), shape)
        elif "moving_variance" in w.name:
            value = rng.uniform(0.5, 2.0, shape)
        elif "gamma" in w.name:
            value = rng.uniform(0.5, 1.5, shape)
        else:  # beta, moving_mean, biases, alpha
            value = rng.normal(0, 0.3, shape)
        weights.append(value.astype("float32"))
    model.set_weights(weights)
    return model


def random_keep(graph, rng):
    """A random valid keep: each prunable group keeps a random count (balanced per block)."""
    scores = [rng.random(g.size) for g in graph.groups]
    counts = [g.partition * int(rng.integers(1, g.size // g.partition + 1)) for g in graph.groups]
    keep = select_top(graph, scores, counts)
    return {g.name: k for g, k in zip(graph.groups, keep) if len(k) < g.size}, keep


def mixed_model():
    """Grouped convs (partition 2 and 4), depthwise with multiplier 2 and a bias, Concatenate,
    BatchNorm over a concatenation, max-pool, Flatten -> Dense, Reshape back, PReLU."""
    inputs = keras.Input((8, 8, 3), name="image")
    a = L.Conv2D(8, 3, padding="same", name="a")(inputs)
    b = L.Conv2D(8, 3, padding="same", groups=2, name="b")(a)
    b = L.BatchNormalization(name="b_bn")(b)
    d = L.DepthwiseConv2D(3, padding="same", name="dw")(L.ReLU(name="b_relu")(b))
    c = L.Conv2D(8, 1, groups=4, name="c")(d)
    e = L.Conv2D(4, 1, name="e")(inputs)
    dw2 = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", use_bias=True, name="dw2")(e)
    x = L.Concatenate(name="cat")([c, dw2, e])
    x = L.BatchNormalization(name="cat_bn")(x)
    x = L.PReLU(shared_axes=[1, 2], name="prelu")(x)
    x = L.MaxPool2D(name="pool")(x)
    h = L.Dense(6, activation="relu", name="h")(L.Flatten(name="flat")(x))
    r = L.Conv2D(5, 1, name="r")(L.Reshape((1, 1, 6), name="back")(h))
    outputs = L.Dense(3, name="out")(L.Flatten(name="flat2")(r))
    return keras.Model(inputs, outputs)


def small_resnet():
    return cnas.build_model(reference.resnet_cifar(20, (16, 16, 3), 10, width=8))


def sequential():
    return keras.Sequential([
        keras.Input((6, 6, 2)), L.Conv2D(6, 3, name="c1"), L.BatchNormalization(name="bn1"),
        L.ReLU(), L.Conv2D(8, 3, padding="same", activation="relu", name="c2"),
        L.Flatten(), L.Dense(7, activation="relu", name="d1"), L.Dropout(0.1),
        L.Dense(3, activation="softmax", name="out")])


@pytest.mark.parametrize("make", [small_resnet, mixed_model, sequential],
                         ids=["resnet20", "grouped-depthwise-concat", "sequential"])
def test_shrink_equals_the_masked_original_and_its_costs_are_exact(make):
    rng = np.random.default_rng(0)
    model = randomize(make(), rng)
    graph = ChannelGraph(model)
    x = rng.normal(size=(4, *model.input_shape[1:])).astype("float32")
    for _ in range(3):
        keep, kept = random_keep(graph, rng)
        assert keep, "the random keep should remove something"
        small = shrink(model, keep, graph=graph)
        masked = mask_channels(model, keep, graph=graph)
        np.testing.assert_allclose(small(x).numpy(), masked(x).numpy(), atol=1e-5, rtol=0)
        costs = model_costs(small)
        assert costs.params == small.count_params()
        assert costs == graph_costs(graph, [len(k) for k in kept])
        assert type(small) is type(model)
        assert [layer.name for layer in small.layers] == [layer.name for layer in model.layers]
    assert model_costs(model).params == model.count_params()  # the original is untouched


def test_masking_a_channel_changes_the_original_so_the_comparison_can_fail():
    rng = np.random.default_rng(1)
    model = randomize(small_resnet(), rng)
    x = rng.normal(size=(2, 16, 16, 3)).astype("float32")
    masked = mask_channels(model, {"stage1_block1_conv1": np.arange(1, 16)})
    assert np.abs(masked(x).numpy() - model(x).numpy()).max() > 1e-4


def test_a_residual_add_ties_every_producer_of_the_stream():
    model = small_resnet()
    graph = ChannelGraph(model)
    stream = graph.group("stage0_block1_conv2")
    assert set(stream.producers) == {"stem_conv", "stage0_block0_conv2", "stage0_block1_conv2",
                                     "stage0_block2_conv2"}
    assert graph.group("stage1_block0_shortcut") is graph.group("stage1_block2_conv2")
    small = shrink(model, {"stage0_block1_conv2": [0, 2, 5]})  # named by one producer
    for name in stream.producers:
        assert small.get_layer(name).filters == 3
    assert small.get_layer("stage0_block0_bn2").gamma.shape == (3,)
    assert small.get_layer("stage0_block0_conv1").kernel.shape[2] == 3  # readers follow
    assert small.get_layer("stage1_block0_shortcut").kernel.shape[2] == 3


def test_keeps_of_tied_producers_are_unified_by_union():
    model = small_resnet()
    small = shrink(model, {"stem_conv": [0, 1], "stage0_block2_conv2": [1, 4]})
    assert small.get_layer("stem_conv").filters == 3


def test_grouped_convs_keep_their_groups_with_balanced_blocks():
    model = mixed_model()
    graph = ChannelGraph(model)
    assert graph.group("a").partition == 2 and graph.group("b").partition == 4
    small = shrink(model, {"b": [0, 2, 5, 7], "a": [1, 2, 4, 7]})
    assert small.get_layer("b").groups == 2 and small.get_layer("b").filters == 4
    assert small.get_layer("c").groups == 4 and small.get_layer("c").kernel.shape[2] == 1
    with pytest.raises(ValueError, match=r"keep\['b'\]: a grouped conv splits these 8 units into "
                                         r"4 blocks.*got \[2, 1, 0, 1\] per block"):
        shrink(model, {"b": [0, 1, 3, 7]})


def test_depthwise_multiplier_and_flatten_follow_the_kept_channels():
    model = mixed_model()
    small = shrink(model, {"e": [1, 3]})
    assert small.get_layer("dw2").depthwise_kernel.shape == (3, 3, 2, 2)
    assert small.get_layer("cat_bn").gamma.shape == (8 + 4 + 2,)
    # Flatten after a 4x4 pool: every position repeats the 14 channels.
    assert small.get_layer("h").kernel.shape == (4 * 4 * 14, 6)
    small = shrink(model, {"h": [0, 5]})
    assert small.get_layer("back").target_shape == (1, 1, 2)
    assert small.get_layer("r").kernel.shape == (1, 1, 2, 5)


@pytest.mark.parametrize("keep, error, message", [
    ({"nope": [0]}, KeyError, "no channel group named 'nope'.*groups: image, a, b"),
    ({"b_bn": [0]}, KeyError, "'b_bn' \\(BatchNormalization\\) creates no channels of its own"),
    ({"out": [0, 1]}, ValueError, "keep\\['out'\\]: this group cannot shrink: 'out' is a model output"),
    ({"image": [0]}, ValueError, "'image' is a model input"),
    ({"e": []}, ValueError, "keep\\['e'\\]: keeps no unit"),
    ({"e": [0, 9]}, ValueError, "keep\\['e'\\]: indices must lie in \\[0, 4\\), got 0..9"),
    ({"e": [True, False]}, ValueError, "a boolean mask needs 4 entries"),
    ({"e": [0.5]}, ValueError, "expected integer unit indices or a boolean mask"),
])
def test_bad_keeps_name_the_group_and_the_fix(keep, error, message):
    with pytest.raises(error, match=message):
        shrink(mixed_model(), keep)


def _functional(*middle):
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, name="conv")(inputs)
    for layer in middle:
        x = layer(x)
    return keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))


class _Custom(keras.Model):
    def call(self, x):
        return x


@pytest.mark.parametrize("make, message", [
    (lambda: _functional(L.Lambda(lambda t: t * 2, name="double")),
     "layer 'double' \\(Lambda\\) is not supported by channel surgery; supported layers: "
     "Activation, ActivityRegularization, Add, .*rewrite the model with these layers"),
    (lambda: _functional(L.LayerNormalization(name="ln")), "layer 'ln' \\(LayerNormalization\\)"),
    (lambda: _functional(L.Conv2D(4, 1, data_format="channels_first", name="cf")),
     "'cf' \\(Conv2D\\) has data_format='channels_first'"),
    (lambda: _Custom(), "is a subclassed model \\(_Custom\\)"),
    (lambda: keras.Sequential([L.Dense(2)]), "is an unbuilt Sequential"),
])
def test_unsupported_models_are_refused_naming_the_layer_and_its_class(make, message):
    with pytest.raises(UnsupportedModelError, match=message):
        ChannelGraph(make())


def test_raw_tf_ops_nested_models_and_shared_layers_are_refused_with_a_hint():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, name="conv")(inputs)
    with pytest.raises(UnsupportedModelError, match="TFOpLambda.*use the keras.layers equivalent"):
        ChannelGraph(keras.Model(inputs, x * 2.0))
    inner = keras.Sequential([keras.Input((6, 6, 4)), L.Conv2D(2, 1)], name="inner")
    with pytest.raises(UnsupportedModelError, match="'inner' is a nested model"):
        ChannelGraph(keras.Model(inputs, inner(x)))
    shared = L.Conv2D(4, 1, name="shared")
    with pytest.raises(UnsupportedModelError, match="'shared' \\(Conv2D\\) is called 2 times"):
        ChannelGraph(keras.Model(inputs, shared(shared(x))))


def test_channels_a_zero_would_not_survive_are_pinned_with_the_reason():
    model = _functional(L.Activation("sigmoid", name="sig"))
    group = ChannelGraph(model).group("conv")
    assert not group.prunable and "activation 'sigmoid' of 'sig' does not map 0 to 0" in group.pinned[0]
    model = _functional(L.Softmax(name="sm"))
    assert "softmax 'sm' normalises over these channels" in ChannelGraph(model).group("conv").pinned
    # A ReLU keeps them prunable; so does a multiplication by a one-channel map.
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, name="conv", activation="relu")(inputs)
    gate = L.Conv2D(1, 1, activation="sigmoid", name="gate")(x)
    y = L.Multiply(name="mul")([x, gate])
    graph = ChannelGraph(keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling2D()(y))))
    assert graph.group("conv").prunable and not graph.group("gate").prunable


def test_expand_widens_and_computes_the_same_function():
    rng = np.random.default_rng(2)
    for make, counts in ((small_resnet, {"stem_conv": 12, "stage2_block1_conv1": 40}),
                         (mixed_model, {"b": 12, "a": 10, "h": 9})):
        model = randomize(make(), rng)
        x = rng.normal(size=(3, *model.input_shape[1:])).astype("float32")
        wide = expand(model, counts)
        np.testing.assert_allclose(wide(x).numpy(), model(x).numpy(), atol=1e-5, rtol=0)
        graph = ChannelGraph(wide)
        for name, count in counts.items():
            assert graph.group(name).size == count
        assert model_costs(wide).params == wide.count_params()
    with pytest.raises(ValueError, match="counts\\['b'\\]: 10 is not a multiple of the group's "
                                         "partition 4.*use 12"):
        expand(mixed_model(), {"b": 10})
    with pytest.raises(ValueError, match="expand only widens"):
        expand(mixed_model(), {"b": 4})


def test_model_costs_match_the_hand_formulas():
    inputs = keras.Input((8, 8, 2))
    a = L.Conv2D(4, 3, strides=2, padding="same", use_bias=False, name="a")(inputs)  # 4x4x4
    a = L.BatchNormalization()(a)
    b = L.DepthwiseConv2D(3, padding="same", use_bias=False)(a)
    y = L.Add()([a, b])
    outputs = L.Dense(3)(L.GlobalAveragePooling2D()(y))
    model = keras.Model(inputs, outputs)
    c = model_costs(model)
    assert c.params == model.count_params() == 9 * 2 * 4 + 4 * 4 + 9 * 4 + 4 * 3 + 3
    assert c.trainable_params == c.params - 2 * 4
    assert c.madds == 16 * 4 * 9 * 2 + 16 * 4 * 9 + 4 * 3
    assert c.flops == (8 / 2) * (8 / 2) * (2 * 9 + 1) * 4 + 4 * 4 * (9 + 1) * 4 + 3 * (4 + 1)
    # The Add reads 64 + 64 and writes 64; the input image holds 128.
    assert c.memory_bytes == 4 * (c.params + 128)
    # Depthwise: input 64, output 64, and `a` is held for the Add (it is the input): 128;
    # the Add: 64 + 64 in, 64 out = 192.
    assert c.peak_activation_bytes == 4 * 192


@pytest.mark.parametrize("space", ["blockset", "resnet", "descriptor"])
def test_model_costs_of_built_specs_equal_the_spec_estimators(space):
    rng = np.random.default_rng(3)
    if space == "blockset":
        specs = [BlockSetSpace((32, 32, 3), 10).sample(rng)]
        specs.append(reference.mobilenet_v2((32, 32, 3), 10, alpha=0.35))
    elif space == "resnet":
        specs = [reference.resnet_cifar(20), reference.resnet_cifar(8, (12, 12, 1), 5, width=3)]
    else:
        specs = [DescriptorSpace((28, 28, 1), 10, max_conv_layers=4, max_filters=16,
                                 max_fc_layers=2, max_hidden=32).sample(rng) for _ in range(3)]
    for spec in specs:
        model = cnas.build_model(spec)
        mine, theirs = model_costs(model).as_dict(), cnas.estimate(spec).as_dict()
        if space == "descriptor":  # its eq. 7 scales a conv by the pool that follows it
            mine.pop("flops"), theirs.pop("flops")
        assert mine == theirs
        assert mine["params"] == model.count_params()


def test_a_shrunk_resnet_is_the_resnet_spec_with_those_widths():
    spec = reference.resnet_cifar(8, (16, 16, 3), 10, width=8)
    model = cnas.build_model(spec)
    small = shrink(model, {"stem_conv": np.arange(5), "stage0_block0_conv1": [0, 1],
                           "stage2_block0_conv2": np.arange(20)})
    thin = cnas.spaces.ResNetSpec((16, 16, 3), 10, (5, 16, 20), (1, 1, 1), (2, 16, 32))
    assert model_costs(small) == cnas.estimate(thin)
    assert small.count_params() == cnas.build_model(thin).count_params()
