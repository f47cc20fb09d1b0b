"""Search spaces: sampling, validity, JSON, keys, mutations and the categorical view."""

import json

import numpy as np
import pytest

from keras_cnas.errors import InvalidSpecError
from keras_cnas.spaces import (
    SPACES,
    BlockSetGenotype,
    BlockSetSpace,
    CategoricalSpace,
    CategoricalSpec,
    ConvLayer,
    Coordinate,
    Descriptor,
    DescriptorSpace,
    EnasCellSpace,
    FcLayer,
    HyperSpace,
    Skeleton,
    Space,
    Stage,
    reference,
    spec_from_json,
)

SPACE_FACTORIES = {
    "descriptor": lambda: DescriptorSpace((32, 32, 3), 10),
    "blockset": lambda: BlockSetSpace((32, 32, 3), 10),
    "categorical": lambda: CategoricalSpace([3, 5, 12, 2], empty_choice=0),
    "enas_cell": lambda: EnasCellSpace((32, 32, 3), 10),
    # tests/hypermodels.py: a KerasTuner-style build function (discovery builds a few models).
    "hyper": lambda: HyperSpace("hypermodels:build_small_cnn", (8, 8, 1), 10),
}


def test_every_registered_space_has_a_test_factory():
    assert sorted(SPACE_FACTORIES) == SPACES.names()


@pytest.fixture(params=sorted(SPACE_FACTORIES))
def space(request) -> Space:
    return SPACE_FACTORIES[request.param]()


def test_samples_are_valid_and_round_trip_through_json_and_decisions(space):
    rng = np.random.default_rng(0)
    for _ in range(200):
        spec = space.sample(rng)
        space.validate(spec)
        assert spec_from_json(spec.to_json()) == spec
        assert type(spec).from_json(spec.to_json()).key() == spec.key()
        assert space.from_decisions(space.to_decisions(spec)) == spec
        decisions = space.to_decisions(spec)
        assert all(0 <= d < s for d, s in zip(decisions, space.decision_sizes()))


def test_sampling_is_deterministic_for_a_seed(space):
    a = [space.sample(np.random.default_rng(7)).key() for _ in range(3)]
    b = [space.sample(np.random.default_rng(7)).key() for _ in range(3)]
    assert a == b
    c = [s.key() for s in (space.sample(np.random.default_rng(8)) for _ in range(3))]
    assert c != a


def test_mutations_are_valid_one_step_neighbours(space):
    rng = np.random.default_rng(1)
    spec = space.sample(rng)
    moves = space.mutations(spec, rng)
    assert moves
    for move in moves[:300]:
        space.validate(move.spec)
        assert move.spec != spec
    assert space.mutate(spec, rng) != spec


def test_spec_json_is_canonical_with_space_tag_and_version(space):
    spec = space.sample(np.random.default_rng(2))
    data = json.loads(spec.to_json())
    assert data["space"] == type(spec).SPACE and data["version"] == 1
    assert spec.to_json() == json.dumps(data, sort_keys=True, separators=(",", ":"))


def test_space_config_round_trips(space):
    assert Space.from_json(space.to_json()) == space


def test_specs_are_hashable_values(space):
    rng = np.random.default_rng(3)
    spec = space.sample(rng)
    same = spec_from_json(spec.to_json())
    assert hash(spec) == hash(same) and len({spec, same}) == 1
    with pytest.raises(Exception):
        spec.num_classes = 3  # frozen


# --- descriptor -------------------------------------------------------------------------


def test_descriptor_spatial_sizes_follow_valid_pooling():
    d = Descriptor((28, 28, 1), 10, (ConvLayer(8, 3, 3, 2, 2, 2, 2), ConvLayer(8, 3, 3, 1, 1, 2, 2),
                                     ConvLayer(8, 3, 3, 2, 1, 1, 1)))
    # 28 -> (28-2)//2+1 = 14 -> (14-1)//2+1 = 7 -> width (7-2)//1+1 = 6, height 7
    assert d.spatial_sizes() == [(14, 14), (7, 7), (7, 6)]


def test_descriptor_that_pools_below_one_pixel_is_invalid_naming_the_layer():
    layers = [ConvLayer(4, 3, 3, 2, 2, 2, 2)] * 4
    with pytest.raises(InvalidSpecError, match=r"conv_layers\[3\].*2x2 pool.*1x1.*>= 1"):
        Descriptor((8, 8, 1), 10, layers)


def test_descriptor_sampling_never_needs_rejection_even_with_deep_nets():
    space = DescriptorSpace((8, 8, 1), 10, min_conv_layers=20, max_conv_layers=26)
    rng = np.random.default_rng(0)
    for _ in range(500):
        spec = space.sample(rng)
        assert min(min(hw) for hw in spec.spatial_sizes()) >= 1


def test_descriptor_space_defaults_are_the_papers_cifar_bounds():
    space = DescriptorSpace((32, 32, 3), 10)
    assert (space.max_conv_layers, space.max_filters, space.max_kernel, space.max_pool,
            space.max_subsample, space.max_hidden) == (26, 128, 3, 2, 2, 2048)


@pytest.mark.parametrize("text, match", [
    ("not json", r"spec JSON: cannot parse"),
    ('{"space": "descriptor", "version": 1, "input_shape": [8, 8, 1], "num_classes": 10, '
     '"conv_layers": [{"n_filters": 0, "filt_x": 3, "filt_y": 3, "pool_x": 1, "pool_y": 1, '
     '"sub_x": 1, "sub_y": 1}], "fc_layers": []}', r"conv_layers\[0\]\.n_filters: 0 is not >= 1"),
    ('{"space": "descriptor", "version": 1, "input_shape": [8, 8], "num_classes": 10, '
     '"conv_layers": [], "fc_layers": []}', r"input_shape: expected \(height, width, channels\)"),
    ('{"space": "descriptor", "version": 1, "input_shape": [8, 8, 1], "num_classes": 10, '
     '"fc_layers": []}', r"conv_layers: missing"),
    ('{"space": "descriptor", "version": 1, "input_shape": [8, 8, 1], "num_classes": 10, '
     '"conv_layers": [], "fc_layers": [{"n_hidden": "64"}]}', r"fc_layers\[0\]\.n_hidden: expected an integer"),
    ('{"space": "descriptor", "version": 9, "input_shape": [8, 8, 1], "num_classes": 10, '
     '"conv_layers": [], "fc_layers": []}', r"version: Descriptor reads version 2, got 9"),
    ('{"space": "nope", "version": 1}', r"space: unknown spec type 'nope'; known: blockset, categorical, descriptor"),
])
def test_malformed_spec_json_names_the_field_and_value(text, match):
    with pytest.raises(InvalidSpecError, match=match):
        spec_from_json(text)


def test_scale_moves_at_least_one_step_and_clips_to_bounds():
    space = DescriptorSpace((32, 32, 3), 10, max_filters=20)
    d = Descriptor((32, 32, 3), 10, (ConvLayer(16, 1, 3),), (FcLayer(1),))
    up = space.scale(d, Coordinate("conv", 0, "n_filters"), 1.5)
    assert up.conv_layers[0].n_filters == 20  # 24 clipped to max_filters
    assert space.scale(up, Coordinate("conv", 0, "n_filters"), 1.5) is None  # at the bound
    down = space.scale(d, Coordinate("conv", 0, "filt_x"), 1.5)
    assert down.conv_layers[0].filt_x == 2  # round(1.5) = 2
    assert space.scale(d, Coordinate("conv", 0, "filt_y"), 0.66).conv_layers[0].filt_y == 2
    assert space.scale(d, Coordinate("fc", 0, "n_hidden"), 0.66) is None  # already 1
    assert space.scale(d, Coordinate("fc", 0, "n_hidden"), 1.5).fc_layers[0].n_hidden == 2


def test_scale_that_breaks_validity_returns_none():
    space = DescriptorSpace((2, 2, 1), 10)
    d = Descriptor((2, 2, 1), 10, (ConvLayer(4, 3, 3, 2, 2, 2, 2), ConvLayer(4, 3, 3, 1, 1, 1, 1)))
    assert space.scale(d, Coordinate("conv", 1, "pool_x"), 1.5) is None  # 2-pool on a 1x1 map


def test_add_and_remove_layer_moves():
    space = DescriptorSpace((32, 32, 3), 10, max_conv_layers=3, max_fc_layers=1)
    rng = np.random.default_rng(0)
    d = Descriptor((32, 32, 3), 10, (ConvLayer(4), ConvLayer(8)), ())
    added = space.add_layer(d, "conv", 0, rng)
    assert [l.n_filters for l in added.conv_layers] == [4, 4, 8]
    assert space.add_layer(added, "conv", 0, rng) is None  # max_conv_layers reached
    assert len(space.add_layer(d, "fc", None, rng).fc_layers) == 1
    assert [l.n_filters for l in space.remove_layer(d, "conv", 0).conv_layers] == [8]
    single = Descriptor((32, 32, 3), 10, (ConvLayer(4),), ())
    assert space.remove_layer(single, "conv", 0) is None  # min_conv_layers is 1
    kinds = {m.move for m in space.mutations(d, rng)}
    assert kinds == {"scale", "add_layer", "remove_layer"}


def test_space_validate_rejects_specs_outside_its_bounds():
    space = DescriptorSpace((32, 32, 3), 10, max_filters=16)
    with pytest.raises(InvalidSpecError, match=r"conv_layers\[0\]\.n_filters: 32 is outside .*\[1, 16\]"):
        space.validate(Descriptor((32, 32, 3), 10, (ConvLayer(32),)))
    with pytest.raises(InvalidSpecError, match="input_shape"):
        space.validate(Descriptor((28, 28, 1), 10, (ConvLayer(8),)))


def test_descriptor_space_rejects_inconsistent_bounds():
    with pytest.raises(InvalidSpecError, match="max_conv_layers: 2 is not >= 3"):
        DescriptorSpace((32, 32, 3), 10, min_conv_layers=3, max_conv_layers=2)


# --- block-set --------------------------------------------------------------------------


def test_default_blockset_space_has_36_positions_and_six_block_types():
    space = BlockSetSpace((224, 224, 3), 1000)
    assert space.skeleton.num_positions == 36
    assert len(space.block_types) == 6 and space.empty_choice == 0
    assert space.decision_sizes() == [7] * 36


def test_empty_position_is_identity_only_where_shapes_agree():
    skeleton = Skeleton(stem_filters=16, stem_stride=1, stages=(Stage(16, 1, 2), Stage(32, 2, 2)),
                        head_filters=0)
    positions = skeleton.positions
    assert [p.is_identity_when_empty for p in positions] == [True, True, False, True]
    assert (positions[2].c_in, positions[2].c_out, positions[2].stride) == (16, 32, 2)


def test_grouped_block_that_does_not_divide_the_channels_is_invalid():
    skeleton = Skeleton(stem_filters=6, stem_stride=1, stages=(Stage(6, 1, 1),), head_filters=0)
    space = BlockSetSpace((8, 8, 1), 10, skeleton=skeleton)
    g4 = 1 + [t.name for t in space.block_types].index("ir_t6_g4")
    assert g4 not in space.allowed[0]
    with pytest.raises(InvalidSpecError, match=r"blocks\[0\]: block type 'ir_t6_g4'.*6 -> 6"):
        space.genotype([g4])


def test_blockset_rejects_wrong_number_of_choices():
    space = BlockSetSpace((32, 32, 3), 10)
    with pytest.raises(InvalidSpecError, match="the skeleton has 36 positions, got 3 choices"):
        space.genotype([0, 1, 2])


def test_nas_bench_macro_keys_are_the_benchmark_keys():
    space = reference.nas_bench_macro_space()
    genotype = space.from_decisions([0, 1, 2, 0, 1, 2, 1, 0])
    assert genotype.key().startswith("01201210@")
    assert space.to_decisions(genotype) == [0, 1, 2, 0, 1, 2, 1, 0]


def test_mobilenet_v2_is_a_point_of_the_default_space():
    genotype = reference.mobilenet_v2((224, 224, 3), 1000)
    BlockSetSpace((224, 224, 3), 1000).validate(genotype)
    assert sum(1 for b in genotype.blocks if b) == 17


def test_blockset_describe_counts_empty_runs():
    g = BlockSetGenotype((32, 32, 3), 10, Skeleton(stem_stride=1), BlockSetSpace((32, 32, 3), 10).block_types,
                         blocks=(1,) + (0,) * 35)
    assert g.describe() == "stem32 > [0]ir_t1 > 35 empty > head1280 > out10"


# --- categorical ------------------------------------------------------------------------


def test_categorical_key_is_the_decision_string():
    assert CategoricalSpace([3] * 8).from_decisions([0, 2, 0, 1, 2, 1, 0, 0]).key() == "02012100"
    assert CategoricalSpace([3, 12]).from_decisions([2, 11]).key() == "2,11"


def test_categorical_spec_out_of_range_names_the_decision():
    with pytest.raises(InvalidSpecError, match=r"decisions\[1\]: 3 is not in \[0, 2\]"):
        CategoricalSpec((0, 3), (3, 3))


def test_categorical_space_validates_arguments():
    with pytest.raises(ValueError, match="decision_sizes"):
        CategoricalSpace([])
    with pytest.raises(InvalidSpecError, match="empty_choice: 5"):
        CategoricalSpace([3, 3], empty_choice=5)


def test_categorical_space_says_which_decisions_are_ordered_and_round_trips_it():
    space = CategoricalSpace([3, 4], ordered=[True, False])
    assert space.ordered_decisions() == [True, False]
    assert Space.from_json(space.to_json()).ordered_decisions() == [True, False]
    assert CategoricalSpace([3, 4]).ordered_decisions() == [False, False]
    assert "ordered" not in CategoricalSpace([3, 4]).get_config()  # older configs still match
    assert CategoricalSpace([3, 4], ordered=True).get_config()["ordered"] is True
    with pytest.raises(ValueError, match=r"ordered: expected True / False or one bool per "
                                         r"decision \(2 of them\), got \[True\]"):
        CategoricalSpace([3, 4], ordered=[True])


def test_every_space_says_which_decisions_are_ordered():
    from keras_cnas.spaces import BlockSetSpace, BlockType, DescriptorSpace, EnasCellSpace

    descriptor = DescriptorSpace((8, 8, 1), 4, max_conv_layers=2)
    assert all(descriptor.ordered_decisions())
    assert len(descriptor.ordered_decisions()) == len(descriptor.decision_sizes())
    cell = EnasCellSpace((8, 8, 1), 4)
    assert cell.ordered_decisions()[0] and not any(cell.ordered_decisions()[1:])
    assert not any(BlockSetSpace((32, 32, 3), 10).ordered_decisions())  # grouped types: labels
    chain = BlockSetSpace((32, 32, 3), 10, block_types=[BlockType("mb_k3_e3", 3, 3),
                                                        BlockType("mb_k5_e6", 6, 5)])
    assert all(chain.ordered_decisions())
