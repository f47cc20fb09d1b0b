"""TFLite Micro: the offline arena replay equals the real interpreter's arena, byte for byte;
the measurement is exact and monotone; models TFLite Micro cannot run fail clearly."""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

import keras_cnas as cnas
from keras_cnas.builders.common import redraw_kernels
from keras_cnas._keras import keras, tf
from keras_cnas.export.arena import (
    SUPPORTED_OPS,
    UnsupportedOpError,
    estimate_arena,
    estimate_arena_bytes,
    greedy_plan,
)
from keras_cnas.export.flatbuffer import TFLiteFormatError, read_model
from keras_cnas.export.micro import (
    HYBRID_MESSAGE,
    MicroError,
    check_micro_compatible,
    micro_arena_bytes,
)
from keras_cnas.spaces import (
    BlockSetSpace,
    ConvLayer,
    Descriptor,
    DescriptorSpace,
    FcLayer,
    Skeleton,
    Stage,
)

pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")
needs_tflm = pytest.mark.skipif(importlib.util.find_spec("tflite_micro") is None,
                                reason="tflite-micro (extra 'micro') is not installed")

# A small block-set skeleton: grouped 1x1 convs (g = 2, 4), depthwise convs, residual adds,
# projection shortcuts, a head conv, global average pooling (MEAN).
SMALL_SKELETON = Skeleton(stem_filters=8, stem_stride=1,
                          stages=(Stage(8, 1, 2), Stage(16, 2, 2), Stage(24, 2, 1)),
                          head_filters=32, activation="relu6")
GENOTYPE_BLOCKS = (5, 6, 4, 3, 0)  # ir_t6_g2, ir_t6_g4, ir_t3_g2, ir_t6, empty (projection)


def _convert(model: keras.Model, mode: str = "int8", int8_io: bool = False, seed: int = 0) -> bytes:
    """A minimal converter: full-integer int8 on random calibration inputs, or float32, or
    dynamic-range."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode in ("int8", "dynamic"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "int8":
        shape = tuple(model.input_shape[1:])
        x = np.random.default_rng(seed).random((8,) + shape, dtype=np.float32)
        converter.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return converter.convert()


def _specs():
    genotype = BlockSetSpace((16, 16, 3), 10, skeleton=SMALL_SKELETON).genotype(GENOTYPE_BLOCKS)
    return {
        "descriptor_8x8x1": Descriptor((8, 8, 1), 10, [ConvLayer(8, pool_x=2, pool_y=2, sub_x=2,
                                                                sub_y=2)], [FcLayer(32)]),
        "descriptor_16x16x3": Descriptor((16, 16, 3), 5, [ConvLayer(12), ConvLayer(16, 1, 3, 2, 2, 2, 2),
                                                          ConvLayer(8, sub_x=2, sub_y=2)], []),
        # Tiny activations, a wide FC: its per-channel arrays, allocated over the kernel's
        # temporaries, set the arena (TFLite Micro tolerates 16 bytes of overlap there).
        "descriptor_2x2x1_wide_fc": Descriptor((2, 2, 1), 5, [ConvLayer(4)], [FcLayer(150)]),
        "genotype_16x16x3": genotype,
    }


@pytest.fixture(scope="module")
def models() -> dict[str, bytes]:
    """The flatbuffers under test: int8 (float I/O), int8 with int8 I/O, float32."""
    out = {}
    for i, (name, spec) in enumerate(_specs().items()):
        keras.backend.clear_session()
        model = redraw_kernels(cnas.build_model(spec), np.random.default_rng(i))
        out[f"{name}_int8"] = _convert(model, "int8")
        if name == "genotype_16x16x3":
            out[f"{name}_int8_io"] = _convert(model, "int8", int8_io=True)
        if name == "descriptor_8x8x1":
            out[f"{name}_float"] = _convert(model, "none")
    return out


MODEL_NAMES = ["descriptor_8x8x1_int8", "descriptor_8x8x1_float", "descriptor_16x16x3_int8",
               "descriptor_2x2x1_wide_fc_int8", "genotype_16x16x3_int8",
               "genotype_16x16x3_int8_io"]


def test_the_test_models_cover_every_op_our_builders_emit(models):
    ops = {op.opcode for m in models.values() for op in read_model(m).main.operators}
    assert ops == {"QUANTIZE", "DEQUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "ADD",
                   "MEAN", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"}
    assert ops <= set(SUPPORTED_OPS)


@needs_tflm
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_offline_estimate_equals_tflite_micro_arena(models, name):
    assert estimate_arena_bytes(models[name]) == micro_arena_bytes(models[name])


@needs_tflm
def test_measured_arena_is_the_smallest_that_allocates(models, tmp_path):
    model = models["genotype_16x16x3_int8"]
    arena = micro_arena_bytes(model)
    path = tmp_path / "model.tflite"
    path.write_bytes(model)

    def allocates(size: int) -> bool:
        code = ("import sys\nfrom tflite_micro import runtime\n"
                "runtime.Interpreter.from_file(sys.argv[1], arena_size=int(sys.argv[2]))")
        return subprocess.run([sys.executable, "-P", "-c", code, str(path), str(size)],
                              capture_output=True).returncode == 0

    assert [allocates(arena - 1), allocates(arena), allocates(arena + 1000)] == [False, True, True]


def test_transient_phases_can_need_more_than_the_final_head_and_tail(models):
    # What print_allocations() reports (memory plan + persistent data) is not enough when a
    # kernel's temporaries or the planner's working memory set the arena.
    wide_fc = estimate_arena(models["descriptor_2x2x1_wide_fc_int8"])
    assert wide_fc.binding_step == "prepare op 3 (FULLY_CONNECTED): per-channel output shifts"
    small = estimate_arena(models["descriptor_8x8x1_int8"])
    assert small.binding_step == "planning: greedy planner working memory"
    for estimate in (wide_fc, small):
        assert estimate.arena_bytes > estimate.plan_bytes + estimate.persistent_bytes


def test_hybrid_model_is_rejected_with_the_export_hint():
    keras.backend.clear_session()
    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(4)])  # 2048 weights: dynamic-range quantizes them
    hybrid = _convert(model, "dynamic")
    with pytest.raises(MicroError, match=r"hybrid \(dynamic-range\).*quantize='int8'"):
        check_micro_compatible(hybrid)
    with pytest.raises(MicroError, match="FULLY_CONNECTED"):
        micro_arena_bytes(hybrid)
    assert HYBRID_MESSAGE in str(pytest.raises(MicroError, check_micro_compatible, hybrid).value)


def test_float16_weight_model_is_rejected():
    keras.backend.clear_session()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    with pytest.raises(MicroError, match="float16-weight models.*quantize='int8'"):
        check_micro_compatible(converter.convert())


def test_float_and_int8_models_are_compatible(models):
    for name in ("descriptor_8x8x1_float", "descriptor_8x8x1_int8", "genotype_16x16x3_int8_io"):
        check_micro_compatible(models[name])


def test_collapsed_softmax_logits_are_reported_before_tflite_micro_aborts():
    keras.backend.clear_session()
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, kernel_initializer="zeros"),
                              keras.layers.Softmax()])
    with pytest.raises(MicroError, match=r"aborts.*SOFTMAX.*2\*\*-26"):
        check_micro_compatible(_convert(model, "int8"))


@pytest.mark.parametrize("corrupt", [b"", b"not a model at all", b"\x18\x00\x00\x00TFL3" + bytes(8)])
def test_corrupt_flatbuffer_is_a_clear_error(corrupt):
    with pytest.raises(TFLiteFormatError, match="tflite_bytes: .*(not a TFLite|corrupt)"):
        estimate_arena_bytes(corrupt)
    with pytest.raises(TFLiteFormatError, match="tflite_bytes"):
        micro_arena_bytes(corrupt)


def test_truncated_flatbuffer_is_a_clear_error(models):
    truncated = models["descriptor_8x8x1_int8"][:600]
    with pytest.raises(TFLiteFormatError, match="corrupt or truncated|corrupt TFLite"):
        estimate_arena_bytes(truncated)
    with pytest.raises(TFLiteFormatError):
        check_micro_compatible(truncated)


def test_not_bytes_is_a_clear_error():
    with pytest.raises(TFLiteFormatError, match="expected the bytes of a .tflite flatbuffer, got str"):
        estimate_arena_bytes("model.tflite")


@needs_tflm
def test_a_model_that_does_not_fit_reports_tflite_micros_words(models):
    with pytest.raises(MicroError, match=r"(?s)cannot run this model.*1000 bytes.*TFLite Micro said"):
        micro_arena_bytes(models["descriptor_8x8x1_int8"], max_arena_bytes=1000)


def test_measurement_arguments_are_validated(models):
    with pytest.raises(ValueError, match="timeout: expected a positive number"):
        micro_arena_bytes(models["descriptor_8x8x1_int8"], timeout=0)
    with pytest.raises(ValueError, match="max_arena_bytes: expected a positive int"):
        micro_arena_bytes(models["descriptor_8x8x1_int8"], max_arena_bytes=1.5)


def test_an_op_outside_the_replay_is_named():
    keras.backend.clear_session()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="tanh")])
    with pytest.raises(UnsupportedOpError, match=r"TANH.*micro_arena_bytes") as info:
        estimate_arena_bytes(_convert(model, "none"))
    assert isinstance(info.value, NotImplementedError)


def test_greedy_plan_places_largest_first_in_the_first_gap():
    # b (64) goes first at 0; c (32) lives with b, so above it at 64; a (32) lives with b
    # but not with c, so it shares offset 64 with c; d (16) lives with b and c: above c.
    offsets, total = greedy_plan([(32, 0, 1), (64, 1, 2), (32, 2, 3), (16, 2, 3)])
    assert offsets == [64, 0, 64, 96] and total == 112
    # Equal sizes: the later-added buffer is placed first (TFLite Micro's sort order).
    assert greedy_plan([(16, 0, 1), (16, 0, 1)]) == ([16, 0], 32)
    assert greedy_plan([]) == ([], 0)


def test_estimate_reports_the_plan_and_the_binding_step(models):
    estimate = estimate_arena(models["genotype_16x16x3_int8"])
    assert estimate.plan_bytes > 0 and estimate.persistent_bytes > 0
    assert estimate.arena_bytes >= estimate.plan_bytes
    assert estimate.num_planned_buffers > 10
    assert estimate.binding_step


@needs_tflm
@pytest.mark.slow
def test_offline_estimate_equals_tflite_micro_on_40_random_architectures():
    spaces = [DescriptorSpace((28, 28, 1), 10, max_conv_layers=4, max_filters=32, max_hidden=128),
              BlockSetSpace((32, 32, 3), 10, skeleton=SMALL_SKELETON)]
    rng = np.random.default_rng(1)
    checked = 0
    for i in range(40):
        spec = spaces[i % 2].sample(rng)
        keras.backend.clear_session()
        flatbuffer = _convert(redraw_kernels(cnas.build_model(spec), np.random.default_rng(i)), "int8", int8_io=i % 4 < 2)
        try:
            check_micro_compatible(flatbuffer)
        except MicroError:  # collapsed logits of an untrained network: TFLite Micro aborts
            continue
        assert estimate_arena_bytes(flatbuffer) == micro_arena_bytes(flatbuffer), spec.to_json()
        checked += 1
    assert checked >= 30
