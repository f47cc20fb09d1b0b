"""Residual descriptors (version 2): strided convs, skip connections with identity or 1x1
projection shortcuts, global pooling; their moves, categorical view, JSON (version 1 still
read, and written for the paper's descriptors) and exact costs, ResNet-8/20 as golden points."""

import json

import numpy as np
import pytest
from conftest import assert_costs_exact

from keras_cnas.costs import estimate
from keras_cnas.errors import InvalidSpecError
from keras_cnas.spaces import ConvLayer, Descriptor, DescriptorSpace, FcLayer, Skip, reference, spec_from_json
from keras_cnas.strategies.moves import DescriptorMoves, Move

SPACE = DescriptorSpace((32, 32, 3), 10, max_conv_layers=8, max_filters=32, max_fc_layers=1,
                        max_hidden=64, max_stride=2, max_skip_span=3, global_pool=True)

#: A paper (version 1) descriptor as older releases wrote it.
V1_JSON = ('{"conv_layers":[{"filt_x":3,"filt_y":3,"n_filters":8,"pool_x":2,"pool_y":2,'
           '"sub_x":2,"sub_y":2}],"fc_layers":[{"n_hidden":16}],"input_shape":[8,8,1],'
           '"num_classes":10,"space":"descriptor","version":1}')


def test_samples_round_trip_through_json_decisions_and_moves():
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(300):
        spec = SPACE.sample(rng)
        SPACE.validate(spec)
        assert spec_from_json(spec.to_json()) == spec
        assert SPACE.from_decisions(SPACE.to_decisions(spec)) == spec
        for m in SPACE.mutations(spec, rng):
            SPACE.validate(m.spec)
            kinds.add(m.move)
    assert {"add_skip", "remove_skip", "scale", "add_layer", "remove_layer"} <= kinds
    assert sum(bool(SPACE.sample(rng).skips) for _ in range(100)) > 50
    assert len(SPACE.decision_sizes()) == 1 + 9 * 8 + 1 + 1  # 7 fields + stride + skip span
    assert all(SPACE.ordered_decisions())


def test_version_1_json_still_loads_and_keeps_its_key():
    spec = spec_from_json(V1_JSON)
    assert spec == Descriptor((8, 8, 1), 10, [ConvLayer(8, 3, 3, 2, 2, 2, 2)], [FcLayer(16)])
    assert spec.to_json() == V1_JSON  # a paper descriptor is still written as version 1
    residual = reference.resnet_cifar_descriptor(8)
    data = json.loads(residual.to_json())
    assert data["version"] == 2 and data["skips"] == [[1, 2], [3, 4], [5, 6]] and data["global_pool"]
    assert spec_from_json(residual.to_json()) == residual
    with pytest.raises(InvalidSpecError, match=r"unknown fields \['skips'\] in version 1 JSON"):
        spec_from_json(V1_JSON.replace('"fc_layers"', '"skips":[],"fc_layers"'))
    with pytest.raises(InvalidSpecError, match=r"conv_layers\[0\]: expected an object with fields "
                                               r"\['n_filters', .*'stride'\]"):
        spec_from_json(V1_JSON.replace('"version":1', '"version":2').replace(
            '"fc_layers"', '"skips":[],"global_pool":false,"fc_layers"'))


def test_bad_skips_name_the_problem():
    conv = [ConvLayer(8), ConvLayer(8, pool_x=2, pool_y=2, sub_x=2, sub_y=2), ConvLayer(8)]
    with pytest.raises(InvalidSpecError, match=r"skips\[1\]: \[1, 2\] must have start <= end < 3"):
        Descriptor((8, 8, 1), 10, conv, skips=[Skip(0, 1), Skip(1, 2)])
    one_off = [ConvLayer(8), ConvLayer(8, pool_x=2, pool_y=2), ConvLayer(8)]  # 8 -> 7
    with pytest.raises(InvalidSpecError, match=r"from a 8x8 map to a 7x7 one, which no strided 1x1"):
        Descriptor((8, 8, 1), 10, one_off, skips=[Skip(1, 2)])
    assert Descriptor((8, 8, 1), 10, conv, skips=[Skip(1, 2)]).shortcut(Skip(1, 2)) == (2, 2)
    assert Descriptor((8, 8, 1), 10, conv, skips=[Skip(2, 2)]).shortcut(Skip(2, 2)) is None
    with pytest.raises(InvalidSpecError, match=r"skips\[0\]: spans 3 conv layers, more than"):
        DescriptorSpace((8, 8, 1), 10, max_skip_span=2).validate(
            Descriptor((8, 8, 1), 10, conv, skips=[Skip(0, 2)]))


def test_layer_moves_carry_the_skips_along():
    spec = Descriptor((16, 16, 1), 10, [ConvLayer(4), ConvLayer(8), ConvLayer(8), ConvLayer(8)],
                      skips=[Skip(1, 2)], global_pool=True)
    space = DescriptorSpace((16, 16, 1), 10, max_skip_span=3, global_pool=True)
    rng = np.random.default_rng(0)
    assert space.add_layer(spec, "conv", 1, rng).skips == (Skip(1, 3),)   # inside: grows
    assert space.add_layer(spec, "conv", 2, rng).skips == (Skip(1, 2),)   # after its end
    assert space.add_layer(spec, "conv", 0, rng).skips == (Skip(2, 3),)   # before: shifts
    assert space.remove_layer(spec, "conv", 2).skips == (Skip(1, 1),)
    assert space.remove_layer(spec, "conv", 0).skips == (Skip(0, 1),)
    moves = DescriptorMoves(space)
    added = moves.apply(spec, Move("add_skip", "skips[3-3]"), rng)
    assert added.skips == (Skip(1, 2), Skip(3, 3))
    assert moves.apply(added, Move("remove_skip", "skips[1-2]"), rng).skips == (Skip(3, 3),)
    assert moves.apply(spec, Move("add_skip", "skips[2-3]"), rng) is None  # overlaps
    assert Move.from_info(Move("add_skip", "skips[3-3]").to_info()).is_meta


@pytest.mark.parametrize("depth", [8, 20])
def test_the_cifar_resnets_are_points_of_the_space_with_their_costs(depth):
    point, resnet = reference.resnet_cifar_descriptor(depth), reference.resnet_cifar(depth)
    a, b = estimate(point), estimate(resnet)
    assert (a.params, a.trainable_params, a.madds, a.flops, a.peak_activation_bytes) == (
        b.params, b.trainable_params, b.madds, b.flops, b.peak_activation_bytes)
    if depth == 8:  # MLPerf Tiny's image-classification reference topology
        assert (a.params, a.trainable_params, a.madds) == (78714, 78042, 12501632)
    space = DescriptorSpace((32, 32, 3), 10, max_conv_layers=depth - 1, max_filters=64,
                            max_fc_layers=0, max_stride=2, max_skip_span=2, global_pool=True)
    space.validate(point)
    assert space.from_decisions(space.to_decisions(point)) == point


def test_hand_formulas_of_a_projection_skip():
    # 8x8x1 -> conv 4@3x3 stride 2 -> 4x4x4, skip 0-0 projects 8x8x1 -> 4x4x4 (1x1, stride 2).
    d = Descriptor((8, 8, 1), 10, [ConvLayer(4, stride=2)], skips=[Skip(0, 0)], global_pool=True)
    r = estimate(d)
    assert r.params == (9 * 4 + 16) + (1 * 4 + 16) + (4 * 10 + 10)
    assert r.madds == 16 * 4 * 9 + 16 * 4 * 1 + 4 * 10
    assert r.flops == (8 / 2) * (8 / 2) * 10 * 4 + (8 / 2) * (8 / 2) * 2 * 4 + 10 * 5
    # The projection reads the 64-element input while the 64-element main output is held.
    assert r.peak_activation_bytes == 4 * max(64 + 64, 64 + 2 * 64, 3 * 64)


@pytest.mark.parametrize("count", [30, pytest.param(200, marks=pytest.mark.slow)])
def test_params_and_madds_are_exact_for_random_residual_descriptors(count):
    rng = np.random.default_rng(0)
    for _ in range(count):
        assert_costs_exact(SPACE.sample(rng))
    assert_costs_exact(reference.resnet_cifar_descriptor(8))


def test_space_config_round_trips_and_the_papers_config_is_unchanged():
    from keras_cnas.spaces import Space

    assert Space.from_json(SPACE.to_json()) == SPACE
    assert SPACE.get_config()["max_skip_span"] == 3 and SPACE.get_config()["global_pool"] is True
    # A search started before version 2 compares its stored configuration on resume.
    paper = DescriptorSpace((32, 32, 3), 10).get_config()
    assert not {"max_stride", "max_skip_span", "global_pool"} & set(paper)
