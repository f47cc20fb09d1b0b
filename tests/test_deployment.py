"""Deployment costs priced from the spec: ``arena_bytes`` equals TFLite Micro's measured arena
of the converted model byte for byte, ``tflite_bytes`` the flatbuffer's length; the pricer; and
a search that prices arena and flash bounds before training."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, assert_deployment_costs_exact

import keras_cnas as cnas
from keras_cnas.costs import ExportTarget, Pricer, deployment_costs
from keras_cnas.costs import arena as replay
from keras_cnas.costs.deployment import converted_bytes, flatbuffer_bytes, packed_model, tflite_graph
from keras_cnas.costs.flatbuffer_size import packed_model_bytes
from keras_cnas.errors import InfeasibleConstraintsError, InvalidSpecError
from keras_cnas.spaces import BlockSetSpace, DescriptorSpace, EnasCellSpace, ResNetSpec, Skeleton, Stage
from keras_cnas.strategies import MonteCarlo, RandomSearch
from keras_cnas.trial import TrialStatus

micro = pytest.importorskip("tflite_micro", reason="tflite-micro (extra 'micro') is not installed")

TARGETS = (ExportTarget("int8"), ExportTarget("int8", int8_io=True), ExportTarget("none"))
# Grouped 1x1 convs, depthwise convs, residual adds, projection shortcuts, a head conv.
SMALL_SKELETON = Skeleton(stem_filters=8, stem_stride=1, stages=(Stage(8, 1, 2), Stage(16, 2, 2)),
                          head_filters=32, activation="relu6")
#: The slow suite's: MobileNetV2-like, three stages.
SKELETON = Skeleton(stem_filters=8, stem_stride=1,
                    stages=(Stage(8, 1, 2), Stage(16, 2, 2), Stage(24, 2, 1)),
                    head_filters=32, activation="relu6")
SPACES = {
    "descriptor": DescriptorSpace((12, 12, 1), 10, max_conv_layers=3, max_filters=16,
                                  max_fc_layers=2, max_hidden=32),
    "blockset": BlockSetSpace((16, 16, 3), 10, skeleton=SMALL_SKELETON),
    # Strided convs, identity and projection skips, global pooling.
    "residual": DescriptorSpace((12, 12, 3), 10, max_conv_layers=4, max_filters=16,
                                max_fc_layers=1, max_hidden=32, max_stride=2, max_skip_span=2,
                                global_pool=True),
    # Normal, reduce, reduce: every op, factorized reductions, calibrations, concats.
    "enas": EnasCellSpace((8, 8, 3), 10, num_layers=3, filters=4, max_blocks=5),
}
SLOW_SPACES = {
    "descriptor": DescriptorSpace((28, 28, 1), 10, max_conv_layers=4, max_filters=32,
                                  max_fc_layers=2, max_hidden=128),
    "blockset": BlockSetSpace((16, 16, 3), 10, skeleton=SKELETON),
    "residual": DescriptorSpace((32, 32, 3), 10, max_conv_layers=8, max_filters=32,
                                max_fc_layers=1, max_hidden=64, max_stride=2, max_skip_span=3),
    # Five cells (reductions at 1 and 3), up to B-ENAS's 7 blocks, odd map sizes.
    "enas": EnasCellSpace((12, 12, 3), 10, num_layers=5, filters=6),
}


def random_resnet(rng: np.random.Generator) -> ResNetSpec:
    """A thinned CIFAR-style ResNet of 1-3 stages at 8x8x3."""
    stages = int(rng.integers(1, 4))
    widths = tuple(int(w) for w in rng.choice([4, 8, 12, 16], stages))
    blocks = tuple(int(b) for b in rng.integers(1, 3, stages))
    mids = tuple(int(rng.integers(2, 2 * w + 1)) for w, n in zip(widths, blocks) for _ in range(n))
    return ResNetSpec((8, 8, 3), 10, widths, blocks, mids)


def _check_space(space: str, count: int, seed: int, spaces=SPACES) -> None:
    rng = np.random.default_rng(seed)
    for i in range(count):
        target = TARGETS[i % len(TARGETS)]
        spec = random_resnet(rng) if space == "resnet" else spaces[space].sample(rng)
        assert_deployment_costs_exact(spec, target, seed=seed + i)


# Default suite: 48 specs in all (12 descriptors, 12 genotypes, 6 ResNets, 9 residual
# descriptors, 9 ENAS nets; each target alike), ~1 s of conversion each. The slow suite
# converts 200 per space.
@pytest.mark.parametrize("space,count", [("descriptor", 12), ("blockset", 12), ("resnet", 6),
                                         ("residual", 9), ("enas", 9)])
def test_priced_arena_equals_tflite_micro_and_flash_equals_the_file(space, count):
    _check_space(space, count, seed=0)


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)  # 200 conversions: ~10 min per space idle, over an hour loaded
@pytest.mark.parametrize("space", ["descriptor", "blockset", "resnet", "residual", "enas"])
def test_priced_costs_on_200_random_specs_per_space(space):
    _check_space(space, 200, seed=1000, spaces=SLOW_SPACES)


def test_residual_edge_cases_are_priced_exactly():
    """Shapes random sampling rarely draws: a projection with unequal (y, x) strides, an
    identity skip from the model's input (int8 I/O: the ADD reads the input tensor), a
    projection across a strided, pooled layer, two skips back to back."""
    from keras_cnas.spaces import ConvLayer, Descriptor, FcLayer
    from keras_cnas.spaces.descriptor import Skip

    specs = [
        Descriptor((12, 12, 3), 10, (ConvLayer(8, pool_x=2, sub_x=2), ConvLayer(8)), (),
                   (Skip(0, 1),), True),
        Descriptor((12, 12, 4), 10, (ConvLayer(4), ConvLayer(6, stride=2)), (FcLayer(16),),
                   (Skip(0, 0),)),
        Descriptor((12, 12, 3), 10, (ConvLayer(8, stride=2, pool_x=2, pool_y=2, sub_x=2, sub_y=2),
                                     ConvLayer(8)), (), (Skip(0, 1),), True),
        Descriptor((12, 12, 4), 10, (ConvLayer(4), ConvLayer(4), ConvLayer(4)), (),
                   (Skip(0, 1), Skip(2, 2)), True),
    ]
    assert specs[0].shortcut(specs[0].skips[0]) == (1, 2)
    for i, spec in enumerate(specs):
        assert_deployment_costs_exact(spec, TARGETS[(i + 1) % len(TARGETS)], seed=i)


def test_enas_edge_cases_are_priced_exactly():
    """Cells random sampling rarely draws: equal blocks (merged sums, a concat of one
    tensor twice), two factorized reductions of one input (a shared pad and crop), a cell
    that never reads its k-1 input (dead alternate cells), every op on the stem (its ReLU
    fuses into the stem conv), a 1x1 map reduced again."""
    from keras_cnas.spaces.enas_cell import EnasCell, EnasNet

    cells = [[(1, "max3x3", 1, "avg3x3"), (1, "max3x3", 1, "avg3x3")],
             [(0, "identity", 0, "identity"), (2, "sep5x5", 0, "identity")],
             [(0, "sep3x3", 0, "max3x3"), (2, "identity", 0, "avg3x3")],
             [(0, "sep3x3", 1, "sep5x5"), (1, "sep3x3", 0, "sep3x3")]]
    specs = [EnasNet((8, 8, 3), 10, EnasCell(c), 3, 4) for c in cells]
    specs.append(EnasNet((2, 2, 1), 3, EnasCell(cells[1]), 4, 4, (1, 2, 3)))
    for i, spec in enumerate(specs):
        assert_deployment_costs_exact(spec, TARGETS[i % len(TARGETS)], seed=i)


def test_enas_nets_are_priced_before_training():
    space = SPACES["enas"]
    pricer = Pricer(cnas.Constraints(max_arena_bytes=10**6), space=space)
    spec = space.sample(np.random.default_rng(2))
    assert pricer.costs(spec)["arena_bytes"] == deployment_costs(spec)["arena_bytes"] > 0
    assert pricer.costs(spec)["tflite_bytes"] == deployment_costs(spec)["tflite_bytes"] > 0


def test_resnet8_as_a_descriptor_prices_as_the_resnet():
    for target in TARGETS:
        assert (deployment_costs(cnas.spaces.reference.resnet_cifar_descriptor(8), target)["arena_bytes"]
                == deployment_costs(cnas.spaces.reference.resnet_cifar(8), target)["arena_bytes"])


def test_solved_arena_equals_the_binary_search_over_the_replay():
    rng = np.random.default_rng(0)
    spaces = [*SPACES.values(), DescriptorSpace((2, 2, 1), 5, max_conv_layers=1, max_hidden=200),
              DescriptorSpace((28, 28, 1), 10)]
    for space in spaces:
        for _ in range(40):
            spec = space.sample(rng)
            for target in TARGETS:
                graph = tflite_graph(spec, target)
                steps = replay._trace(graph)[0]
                assert replay._smallest_arena(steps) == replay._smallest_arena_by_search(steps)
                assert replay._replay(steps, replay._smallest_arena(steps))[0] is None
                # The pricing path (memoised, condensed Prepare steps) agrees.
                assert replay.replay_arena_bytes(graph, checked=True) == replay._smallest_arena(steps)


def test_memoised_flatbuffer_sizing_equals_packing_step_by_step():
    rng = np.random.default_rng(1)
    specs = [space.sample(rng) for space in (*SPACES.values(), *SLOW_SPACES.values())
             for _ in range(25)] + [random_resnet(rng) for _ in range(25)]
    for spec in specs:
        for target in TARGETS:
            model = packed_model(tflite_graph(spec, target))
            assert packed_model_bytes(model) == packed_model_bytes(model, memoised=False)


def test_the_graph_is_the_converters():
    spec = cnas.spaces.Descriptor((8, 8, 1), 10, [cnas.spaces.ConvLayer(8, pool_x=2, pool_y=2,
                                                                        sub_x=2, sub_y=2)],
                                  [cnas.spaces.FcLayer(32)])
    ops = {t: [op.opcode for op in tflite_graph(spec, t).main.operators] for t in TARGETS}
    core = ["CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "FULLY_CONNECTED", "SOFTMAX"]
    assert ops[TARGETS[0]] == ["QUANTIZE", *core, "DEQUANTIZE"]
    assert ops[TARGETS[1]] == ops[TARGETS[2]] == core
    graph = tflite_graph(spec, TARGETS[0]).main
    scales = [t.num_scales for t in graph.tensors if t.is_constant]
    assert sorted(scales) == [0, 8, 8, 10, 10, 32, 32]  # per-channel vectors; the shape operand


def test_flash_counts_weights_and_quantization_vectors():
    small = cnas.spaces.Descriptor((8, 8, 1), 10, [cnas.spaces.ConvLayer(4)])
    wide = cnas.spaces.Descriptor((8, 8, 1), 10, [cnas.spaces.ConvLayer(8)])
    # 4 more filters: 4 * 9 int8 weights, 4 int32 biases, 2 x 4 per-channel scales and
    # int64 zero points; the classifier reads 256 more inputs: +2560 int8 weights.
    a, b = (converted_bytes(tflite_graph(s)) for s in (small, wide))
    assert b - a >= 2560 + 36 + 16 + 2 * 4 * (4 + 8)
    # A user's model (names unknown) is bounded from above.
    assert flatbuffer_bytes(tflite_graph(small)) > a


def test_unmodelled_spaces_and_targets_are_named():
    cell = cnas.spaces.CategoricalSpec(decisions=(0, 2), sizes=(3, 3))
    with pytest.raises(InvalidSpecError, match="no deployment cost model for CategoricalSpec.*"
                                               "modelled spaces: blockset, descriptor, enas_cell, "
                                               "resnet"):
        deployment_costs(cell)
    with pytest.raises(ValueError, match="quantize: deployment costs are modelled for int8, none"):
        ExportTarget("dynamic")
    with pytest.raises(ValueError, match="int8_io=True needs quantize='int8'"):
        ExportTarget("none", int8_io=True)
    # An unmodelled space is priced without them (its arena can still be measured).
    from keras_cnas.costs.deployment import has_deployment_costs

    assert not has_deployment_costs(cell)
    assert has_deployment_costs(SPACES["enas"].sample(np.random.default_rng(0)))


def test_pricer_prices_once_and_checks():
    space = SPACES["descriptor"]
    pricer = Pricer(cnas.Constraints(max_arena_bytes=5000, max_params=10**6), space=space)
    spec = space.sample(np.random.default_rng(1))
    assert pricer.costs(spec) is pricer.costs(spec)  # cached
    verdict = pricer.check(spec)
    assert verdict.costs["arena_bytes"] == deployment_costs(spec)["arena_bytes"]
    assert bool(verdict) == (verdict.costs["arena_bytes"] <= 5000) and not verdict.violations == bool(verdict)
    with pricer.recording():
        for seed in range(20):
            pricer.check(space.sample(np.random.default_rng(seed)))
    logged = pricer.take_rejections()
    assert logged and all(entry["violated"] == ["arena_bytes"] for entry in logged)
    assert pricer.take_rejections() == []
    float_pricer = Pricer(target=ExportTarget("none"))
    assert float_pricer.costs(spec)["arena_bytes"] > pricer.costs(spec)["arena_bytes"]
    assert "arena_bytes" not in Pricer(target=None).costs(spec).as_dict()


def test_pricing_never_imports_tensorflow():
    code = ("import sys, numpy as np\n"
            "from keras_cnas.costs import Pricer, deployment_costs\n"
            "from keras_cnas.spaces import DescriptorSpace\n"
            "spec = DescriptorSpace((28, 28, 1), 10).sample(np.random.default_rng(0))\n"
            "print(deployment_costs(spec)['arena_bytes'] > 0, Pricer().costs(spec).get('tflite_bytes') > 0)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'tf_keras', 'keras', 'ai_edge_litert', 'tflite_micro')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         check=True).stdout.split("\n")
    assert out[:2] == ["True True", "[]"]


# --- searches priced before training ----------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return cnas.data.load("digits")


def _digits_space(digits):
    return DescriptorSpace(digits.input_shape, digits.num_classes, max_conv_layers=3, max_filters=32,
                           max_fc_layers=1, max_hidden=32)


def _search_within_median_bounds(space, digits, tmp_path, num_samples: int) -> None:
    """A traction search under arena and flash bounds at the median of 40 priced samples:
    every trained trial meets them, measured as priced."""
    costs = [deployment_costs(space.sample(np.random.default_rng(s))) for s in range(40)]
    arena = int(np.median([c["arena_bytes"] for c in costs]))
    flash = int(np.median([c["tflite_bytes"] for c in costs]))
    evaluator = cnas.training.KerasEvaluator(digits, traction_epochs=1, batch_size=64,
                                             measure=("arena_bytes", "tflite_bytes"))
    result = cnas.search(space, cnas.Constraints(max_arena_bytes=arena, max_tflite_bytes=flash),
                         strategy=RandomSearch(num_samples=num_samples, fidelity="traction"),
                         evaluator=evaluator, search_dir=tmp_path, seed=0, verbose=False,
                         finalize=False)
    # No trained candidate is discarded for the bounds: they were priced before training.
    assert [t.status for t in result.trials] == [TrialStatus.COMPLETED] * num_samples
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rejected_proposals"] > 0
    for trial in result.trials:
        assert trial.costs["arena_bytes"] == trial.costs["arena_bytes_priced"] <= arena
        assert trial.costs["tflite_bytes"] == trial.costs["tflite_bytes_priced"] <= flash
        assert "arena_bytes_error" not in trial.costs and "tflite_bytes_error" not in trial.costs


def test_arena_and_flash_bounds_are_priced_before_training(digits, tmp_path):
    _search_within_median_bounds(_digits_space(digits), digits, tmp_path, 4)


@pytest.mark.slow  # ~2 min: ENAS nets train slower
def test_an_enas_search_prices_arena_and_flash_before_training(digits, tmp_path):
    space = EnasCellSpace(digits.input_shape, digits.num_classes, num_layers=3, filters=4,
                          max_blocks=3)
    _search_within_median_bounds(space, digits, tmp_path, 2)


def test_an_impossible_arena_budget_stops_naming_the_bound(digits, tmp_path):
    space = _digits_space(digits)
    evaluator = cnas.training.KerasEvaluator(digits, traction_epochs=1)
    with pytest.raises(InfeasibleConstraintsError, match=r"arena_bytes [0-9,]+ vs "
                                                         r"max_arena_bytes=1,000 .*raise max_arena_bytes"):
        cnas.search(space, cnas.Constraints(max_arena_bytes=1000),
                    strategy=MonteCarlo(num_random=2, num_adaptive=0, num_full=0, max_rejections=50),
                    evaluator=evaluator, search_dir=tmp_path, verbose=False)


# --- a user's Keras model: compression.model_costs(model, target=...) -------------------


def test_model_costs_of_a_built_spec_price_like_the_spec():
    from keras_cnas._keras import keras
    from keras_cnas.compression import model_costs

    rng = np.random.default_rng(3)
    specs = [SPACES["descriptor"].sample(rng) for _ in range(4)]
    specs += [SPACES["blockset"].sample(rng) for _ in range(3)] + [random_resnet(rng) for _ in range(3)]
    for spec in specs:
        keras.backend.clear_session()
        model = cnas.build_model(spec)
        for target in TARGETS:
            costs = model_costs(model, target=target)
            assert costs["arena_bytes"] == deployment_costs(spec, target)["arena_bytes"], spec.to_json()
    assert "arena_bytes" not in model_costs(model).as_dict()  # analytic only without a target


def test_model_costs_of_a_users_keras_model_match_the_converted_model():
    from keras_cnas._keras import keras
    from keras_cnas.builders.common import redraw_weights
    from keras_cnas.compression import model_costs
    from keras_cnas.export import micro_arena_bytes, to_tflite

    keras.backend.clear_session()
    layers = keras.layers
    inputs = keras.Input((10, 10, 1), name="pixels")
    x = layers.Conv2D(6, 3, padding="valid", activation="relu", name="c1")(inputs)
    x = layers.AveragePooling2D(2, name="p1")(x)
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    y = layers.BatchNormalization(name="bn")(y)
    y = layers.ReLU(6.0, name="act")(y)
    x = layers.Add(name="add")([x, y])
    x = layers.Flatten(name="flat")(x)
    x = layers.Dropout(0.2, name="drop")(x)
    outputs = layers.Dense(4, activation="softmax", name="out")(x)
    model = redraw_weights(keras.Model(inputs, outputs, name="user_net"), np.random.default_rng(0))
    rng = np.random.default_rng(0)
    flatbuffer = to_tflite(model, "int8", representative_data=rng.random((8, 10, 10, 1), np.float32))
    costs = model_costs(model, target=ExportTarget("int8"))
    assert costs["arena_bytes"] == micro_arena_bytes(flatbuffer)
    assert costs["tflite_bytes"] >= len(flatbuffer)


def test_model_costs_name_a_layer_the_converter_mapping_does_not_model():
    from keras_cnas._keras import keras
    from keras_cnas.compression import model_costs
    from keras_cnas.costs.arena import UnsupportedOpError

    keras.backend.clear_session()
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="c"),
                              keras.layers.BatchNormalization(name="lonely_bn"),
                              keras.layers.Activation("tanh", name="t"), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    with pytest.raises(UnsupportedOpError, match="layer 'c'.*neither a bias nor|'t'"):
        model_costs(model, target=ExportTarget())


def test_monte_carlo_under_an_arena_bound_only_asks_for_specs_that_fit():
    from keras_cnas.strategies import SearchContext
    from keras_cnas.trial import Trial

    space = DescriptorSpace((28, 28, 1), 10, max_conv_layers=4, max_filters=64, max_fc_layers=2,
                            max_hidden=256)
    bound = 24 * 1024
    constraints = cnas.Constraints(max_arena_bytes=bound)
    pricer = Pricer(constraints, space=space)
    mc = MonteCarlo(num_random=6, num_adaptive=20, num_full=0)
    mc.setup(SearchContext(space, constraints, pricer), seed=0)
    asked = []
    while (candidate := mc.ask()) is not None:
        trial = Trial.from_candidate(len(asked), candidate)
        # A toy score that rewards size: the adaptive phase pushes against the bound.
        trial.status, trial.score = TrialStatus.COMPLETED, float(pricer.costs(trial.spec)["params"])
        asked.append(trial)
        mc.tell(trial)
    assert len(asked) == 26 and mc.rejections > 0
    assert all(pricer.costs(t.spec)["arena_bytes"] <= bound for t in asked)
    assert any(t.info.get("coordinate") for t in asked[6:])  # adaptive moves were taken


def test_a_measured_arena_that_differs_from_its_price_is_recorded():
    from keras_cnas.engine.search import _with_estimate_errors

    costs = _with_estimate_errors({"params": 10, "arena_bytes": 4096, "tflite_bytes": 9000},
                                  {"arena_bytes": 4112, "tflite_bytes": 8800, "train_seconds": 1.0})
    assert costs["arena_bytes"] == 4112 and costs["arena_bytes_priced"] == 4096
    assert costs["arena_bytes_error"] == 16
    assert costs["tflite_bytes_priced"] == 9000 and costs["tflite_bytes_error"] == -200
    exact = _with_estimate_errors({"arena_bytes": 4096}, {"arena_bytes": 4096})
    assert "arena_bytes_error" not in exact
