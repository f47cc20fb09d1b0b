"""The analytic cost model: hand formulas, golden references, constraints."""

import dataclasses
import json
import subprocess
import sys

import pytest

from keras_cnas.costs import Constraints, CostReport, estimate
from keras_cnas.errors import InvalidSpecError, UnknownCostError
from keras_cnas.spaces import (
    BlockSetGenotype,
    BlockType,
    CategoricalSpace,
    ConvLayer,
    Descriptor,
    FcLayer,
    Skeleton,
    Stage,
    reference,
)


def test_descriptor_costs_match_the_hand_formulas():
    # 8x8x1 -> conv 4@3x3, BN, ReLU, 2x2 pool stride 2 -> 4x4x4 -> fc 16 -> 10 classes.
    d = Descriptor((8, 8, 1), 10, (ConvLayer(4, 3, 3, 2, 2, 2, 2),), (FcLayer(16),))
    r = estimate(d)
    conv_w, bn = 3 * 3 * 1 * 4, 4 * 4
    assert r.params == conv_w + bn + (64 * 16 + 16) + (16 * 10 + 10) == 1262
    assert r.trainable_params == 1262 - 2 * 4
    assert r.madds == 8 * 8 * 4 * 9 + 64 * 16 + 16 * 10 == 3488
    # eq. 7 with 1/s in both directions: (8/2)*(8/2)*(1*3*3 + 1)*4; eq. 8: h*(x + 1).
    assert r.flops == (8 / 2) * (8 / 2) * (1 * 9 + 1) * 4 + 16 * (64 + 1) + 10 * (16 + 1) == 1850
    # eq. 6: B * (weights + largest tensor); the conv output 8x8x4 = 256 is the largest.
    assert r.memory_bytes == 4 * (1262 + 256)
    # conv: input 64 + output 256 alive at once (the pool: 256 + 64 as well).
    assert r.peak_activation_bytes == 4 * 320
    assert estimate(d, bytes_per_element=1).memory_bytes == 1262 + 256


def test_blockset_costs_match_the_hand_formulas_with_a_residual_block():
    skeleton = Skeleton(stem_filters=8, stem_kernel=3, stem_stride=1, stages=(Stage(8, 1, 1),),
                        head_filters=0, activation="relu6")
    g = BlockSetGenotype((4, 4, 1), 10, skeleton, (BlockType("t6", 6),), (1,))
    r = estimate(g)
    stem = 9 * 8 + 4 * 8
    expand, dw, project = 8 * 48 + 4 * 48, 9 * 48 + 4 * 48, 48 * 8 + 4 * 8
    assert r.params == stem + expand + dw + project + (8 * 10 + 10) == 1810
    assert r.trainable_params == 1810 - 2 * (8 + 48 + 48 + 8)
    assert r.madds == 16 * 8 * 9 + 16 * 48 * 8 + 16 * 48 * 9 + 16 * 8 * 48 + 8 * 10 == 20432
    assert r.flops == 16 * 10 * 8 + 16 * 9 * 48 + 16 * 10 * 48 + 16 * 49 * 8 + 10 * 9 == 22234
    assert r.memory_bytes == 4 * (1810 + 16 * 48)
    # Depthwise: its input and output (16x48 each) plus the block input held for the Add.
    assert r.peak_activation_bytes == 4 * (768 + 768 + 128)


def test_empty_shape_changing_position_costs_a_projection_shortcut():
    skeleton = Skeleton(stem_filters=8, stem_stride=1, stages=(Stage(16, 2, 1),), head_filters=0)
    g = BlockSetGenotype((4, 4, 1), 10, skeleton, (BlockType("t6", 6),), (0,))
    stem = 9 * 8 + 4 * 8
    shortcut = 8 * 16 + 4 * 16
    assert estimate(g).params == stem + shortcut + 16 * 10 + 10
    assert estimate(g).madds == 16 * 8 * 9 + 2 * 2 * 16 * 8 + 16 * 10


def test_grouped_convs_divide_weights_and_madds_by_the_groups():
    skeleton = Skeleton(stem_filters=8, stem_stride=1, stages=(Stage(8, 1, 1),), head_filters=0)
    plain = BlockSetGenotype((4, 4, 1), 10, skeleton, (BlockType("a", 6),), (1,))
    grouped = BlockSetGenotype((4, 4, 1), 10, skeleton,
                               (BlockType("a", 6, expand_groups=2, project_groups=4),), (1,))
    saved = (8 * 48 - 8 * 48 // 2) + (48 * 8 - 48 * 8 // 4)
    assert estimate(plain).params - estimate(grouped).params == saved
    assert estimate(plain).madds - estimate(grouped).madds == 16 * saved


def test_mobilenet_v2_params_equal_keras_applications_and_madds_are_300m():
    from keras_cnas._keras import keras

    genotype = reference.mobilenet_v2((224, 224, 3), 1000)
    report = estimate(genotype)
    assert report.params == keras.applications.MobileNetV2(weights=None).count_params() == 3538984
    assert abs(report.madds - 300e6) / 300e6 < 0.02  # published: 300 M MAdds
    assert report.madds == 300774272  # pinned


@pytest.mark.parametrize("alpha", [0.35, 0.75, 1.4])
def test_mobilenet_v2_width_multipliers_match_keras_applications(alpha):
    from keras_cnas._keras import keras

    keras.backend.clear_session()
    ours = estimate(reference.mobilenet_v2((224, 224, 3), 1000, alpha=alpha)).params
    assert ours == keras.applications.MobileNetV2(weights=None, alpha=alpha).count_params()


def test_vgg19_descriptor_is_keras_vgg19_with_batchnorm_instead_of_conv_biases():
    report = estimate(reference.vgg19((224, 224, 3), 1000))
    conv_filters = 2 * 64 + 2 * 128 + 4 * 256 + 8 * 512
    keras_vgg19_params = 143667240  # tf_keras.applications.VGG19(weights=None).count_params()
    assert report.params == keras_vgg19_params - conv_filters + 4 * conv_filters
    assert report.madds == 19632062464  # the published ~19.6 G multiply-adds
    # eqs. 7-9 over VGG-19's layout: convs at full size, except 1/s = 1/2 on pooled layers.
    flops, size, depth = 0.0, 224, 3
    layout = reference.VGG19_LAYOUT
    for i, item in enumerate(layout):
        if item == "M":
            continue
        s = 2 if i + 1 < len(layout) and layout[i + 1] == "M" else 1
        flops += (size / s) * (size / s) * (depth * 9 + 1) * item
        size, depth = size // s, item
    x = size * size * depth
    for h in (4096, 4096, 1000):
        flops, x = flops + h * (x + 1), h
    assert report.flops == flops


def test_nas_bench_macro_table_params_and_flops_are_reproduced_exactly(shared_data):
    table = json.loads((shared_data / "nas-bench-macro" / "nas-bench-macro_cifar10.json").read_text())
    space = reference.nas_bench_macro_space()
    mismatches = []
    for key, row in table.items():
        report = estimate(space.genotype([int(ch) for ch in key]))
        # The table counts trainable parameters (PyTorch) and multiply-adds as "flops".
        if (report.trainable_params, report.madds) != (row["params"], row["flops"]):
            mismatches.append(key)
    assert len(table) == 6561 and mismatches == []


def test_estimate_of_a_spec_without_cost_model_names_the_known_ones():
    spec = CategoricalSpace([3, 3]).from_decisions([0, 1])
    with pytest.raises(InvalidSpecError, match="no analytic cost model.*blockset, descriptor"):
        estimate(spec)
    with pytest.raises(ValueError, match="bytes_per_element"):
        estimate(reference.vgg19((32, 32, 3), 10), bytes_per_element=0)


# --- Constraints -------------------------------------------------------------------------


def test_constraints_report_which_bound_is_broken_and_by_how_much():
    budget = Constraints(max_params=1000, max_memory_bytes=200_000)
    report = CostReport(params=1500, memory_bytes=100_000)
    (v,) = budget.violations(report)
    assert (v.cost, v.bound, v.value, v.excess, v.ratio) == ("params", 1000, 1500, 500, 1.5)
    assert "params = 1,500 > max 1,000 (+50.0%)" == str(v)
    assert not budget.satisfied(report)
    assert budget.satisfied(CostReport(params=1000, memory_bytes=200_000))


def test_constraints_check_only_reported_costs_and_list_the_missing_ones():
    budget = Constraints(max_params=10, max_latency_ms=5)
    assert budget.satisfied({"params": 5})
    assert budget.missing({"params": 5}) == ["latency_ms"]
    assert not budget.satisfied(CostReport(params=5).with_costs(latency_ms=7.5))


@pytest.mark.parametrize("kwargs, match", [
    ({"max_params": 0}, r"max_params: expected a positive number, got 0"),
    ({"max_flops": -1.0}, r"max_flops: expected a positive number, got -1.0"),
    ({"max_madds": float("nan")}, r"max_madds: expected a positive number, got nan"),
    ({"params": 10}, r"params=10: constraint keywords are max_<cost name>"),
])
def test_constraints_reject_bad_bounds_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Constraints(**kwargs)


def test_constraint_on_a_cost_nothing_reports_lists_the_available_costs():
    budget = Constraints(max_params=10, max_arena_bytes=64_000)
    with pytest.raises(UnknownCostError, match=r"max_arena_bytes.*available: max_flops, max_params"):
        budget.check_available(["params", "flops"])
    budget.check_available(["params", "arena_bytes"])


def test_fraction_of_a_reference_bounds_memory_and_flops():
    ref = estimate(reference.vgg19((32, 32, 3), 10))
    half = Constraints.fraction_of(ref, 0.5)
    assert half.bounds == {"memory_bytes": ref.memory_bytes / 2, "flops": ref.flops / 2}
    assert not half.satisfied(ref)
    with pytest.raises(UnknownCostError, match="does not report"):
        Constraints.fraction_of({"params": 1}, 0.5)
    with pytest.raises(ValueError, match="fraction"):
        Constraints.fraction_of(ref, 0)


def test_constraints_round_trip_and_merge_to_the_tighter_bound():
    a = Constraints(max_params=100, max_flops=10)
    assert Constraints.from_dict(a.to_dict()) == a
    assert a.merged(Constraints(max_params=50, max_madds=3)).bounds == {
        "params": 50, "flops": 10, "madds": 3}


def test_cost_report_round_trips_and_keeps_extras():
    r = CostReport(params=3, madds=4).with_costs(latency_ms=1.5, flops=2.0)
    assert r.flops == 2.0 and r.extra == {"latency_ms": 1.5}
    assert CostReport.from_dict(r.to_dict()) == r
    with pytest.raises(KeyError, match="arena_bytes"):
        r["arena_bytes"]


def test_importing_spaces_and_costs_does_not_import_tensorflow():
    code = ("import sys, keras_cnas, keras_cnas.spaces, keras_cnas.costs;"
            "print('tensorflow' in sys.modules, 'tf_keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_keyed_flatbuffer_objects_size_like_the_objects_they_make():
    """packed_model gives tensors and operators as memo keys (KeyedObjects); sizing by
    key must equal sizing the objects themselves, memoised and step by step, whatever
    moves the memo has already seen (the second pass runs on a warm memo)."""
    import numpy as np

    from keras_cnas.costs.deployment import ExportTarget, converted_bytes, packed_model, tflite_graph
    from keras_cnas.costs.flatbuffer_size import KeyedObjects, packed_model_bytes
    from keras_cnas.spaces import DescriptorSpace

    space = DescriptorSpace((16, 16, 3), 10, max_conv_layers=5, max_stride=2, max_skip_span=2)
    rng = np.random.default_rng(3)
    specs = [space.sample(rng) for _ in range(20)]
    for _ in range(2):
        for spec in specs:
            for target in (ExportTarget("int8"), ExportTarget("none")):
                graph = tflite_graph(spec, target)
                model = packed_model(graph)
                assert isinstance(model.tensors, KeyedObjects)
                plain = dataclasses.replace(model, tensors=list(model.tensors),
                                            operators=list(model.operators))
                assert (converted_bytes(graph) == packed_model_bytes(model)
                        == packed_model_bytes(plain) == packed_model_bytes(plain, memoised=False))
