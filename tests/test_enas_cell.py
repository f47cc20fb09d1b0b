"""ENAS cells: the space, its categorical view, the exact cost model, the Keras builder, TFLite."""

import json
import time

import numpy as np
import pytest

import keras_cnas as cnas
from conftest import assert_costs_exact
from keras_cnas._keras import keras
from keras_cnas.errors import InvalidSpecError
from keras_cnas.spaces import SPACES, EnasCell, EnasCellSpace, EnasNet, Space, spec_from_json
from keras_cnas.spaces.enas_cell import OPS, default_reduction_layers

CELL = EnasCell([(0, "sep3x3", 1, "identity"), (2, "avg3x3", 1, "sep5x5"), (0, "max3x3", 2, "sep3x3")])


# --- the space ------------------------------------------------------------------------------


def test_samples_round_trip_through_json_decisions_and_keys():
    space = EnasCellSpace((28, 28, 1), 10)
    rng = np.random.default_rng(0)
    block_counts = set()
    for _ in range(300):
        spec = space.sample(rng)
        space.validate(spec)
        block_counts.add(spec.cell.num_blocks)
        assert spec_from_json(spec.to_json()) == spec
        assert EnasNet.from_json(spec.to_json()).key() == spec.key()
        decisions = space.to_decisions(spec)
        assert all(0 <= d < s for d, s in zip(decisions, space.decision_sizes()))
        assert space.from_decisions(decisions) == spec
    assert block_counts == set(range(2, 8))  # B uniform over [2, 7]
    assert Space.from_json(space.to_json()) == space and SPACES.get("enas_cell") is EnasCellSpace


def test_categorical_view_is_block_count_then_four_decisions_per_block():
    space = EnasCellSpace((8, 8, 1), 10, min_blocks=2, max_blocks=4, ops=["identity", "sep3x3"])
    assert space.decision_sizes() == [3, 2, 2, 2, 2, 3, 2, 3, 2, 4, 2, 4, 2, 5, 2, 5, 2]
    spec = space.net([(0, "sep3x3", 1, "identity"), (2, "identity", 0, "sep3x3")])
    decisions = space.to_decisions(spec)
    assert decisions == [0, 0, 1, 1, 0, 2, 0, 0, 1] + [0] * 8  # inactive blocks are 0
    # A controller samples every decision: those of inactive blocks are ignored.
    noisy = decisions[:9] + [2, 1, 1, 0, 4, 1, 3, 1]
    assert space.from_decisions(noisy) == spec
    with pytest.raises(InvalidSpecError, match=r"decisions\[5\]: 3 is not in \[0, 2\]"):
        space.from_decisions(decisions[:5] + [3] + decisions[6:])
    with pytest.raises(InvalidSpecError, match=r"expected 17 values .* got 3"):
        space.from_decisions([0, 0, 0])


def test_mutations_change_one_decision_or_the_block_count_by_one():
    space = EnasCellSpace((8, 8, 1), 10, max_blocks=4)
    rng = np.random.default_rng(3)
    spec = space.net(CELL)
    moves = space.mutations(spec, rng)
    base = space.to_decisions(spec)
    kinds = {}
    for move in moves:
        space.validate(move.spec)
        kinds[move.move] = kinds.get(move.move, 0) + 1
        changed = [i for i, (a, b) in enumerate(zip(base, space.to_decisions(move.spec))) if a != b]
        if move.move == "set":
            assert len(changed) == 1, move.detail
        else:
            assert abs(move.spec.cell.num_blocks - 3) == 1
            assert move.spec.cell.blocks[:2] == spec.cell.blocks[:2]
    # 3 blocks: inputs have 2, 3, 4 choices, ops 5: (1 + 4 + 1 + 4) + (2 + 4) * 2 + (3 + 4) * 2
    assert kinds == {"set": 36, "add_block": 1, "remove_block": 1}
    assert space.mutate(spec, rng) != spec


def test_default_reductions_follow_nasnet_layout_and_with_layers_keeps_the_cell():
    assert default_reduction_layers(3) == (1, 2)
    assert default_reduction_layers(11) == (3, 7)  # N=3: 3 normal, reduce, 3, reduce, 3
    assert default_reduction_layers(8) == (2, 5)
    spec = EnasNet((32, 32, 3), 10, CELL, num_layers=3, filters=20)
    final = spec.with_layers(11)
    assert final.cell == spec.cell and final.reduction_layers == (3, 7)
    plan = final.layer_plan()
    assert [p.channels for p in plan] == [20] * 3 + [40] * 4 + [80] * 4
    assert [p.out_size for p in plan][::3] == [(32, 32), (16, 16), (16, 16), (8, 8)]
    assert spec.with_layers(5, reduction_layers=[4]).reduction_layers == (4,)


def test_cell_bookkeeping_unused_blocks_and_inputs():
    assert CELL.unused_blocks == (1, 2)  # block 0 feeds blocks 1 and 2
    assert CELL.key() == "0sep3x3+1identity|2avg3x3+1sep5x5|0max3x3+2sep3x3"
    only_k2 = EnasCell([(0, "sep3x3", 0, "avg3x3")])
    assert (only_k2.uses_input(0), only_k2.uses_input(1)) == (True, False)


@pytest.mark.parametrize("blocks, match", [
    ([(2, "sep3x3", 0, "identity")], r"cell\.blocks\[0\]\.input_a: 2 is not in \[0, 1\]; 0 = cell k-2"),
    ([(0, "sep3x3", 1, "identity"), (0, "sep3x3", 4, "identity")],
     r"cell\.blocks\[1\]\.input_b: 4 is not in \[0, 2\]"),
    ([(0, "conv3x3", 1, "identity")], r"cell\.blocks\[0\]\.op_a: unknown op 'conv3x3'; known ops: identity"),
    ([(0, "sep3x3", 1)], r"cell\.blocks\[0\]: expected \(input_a, op_a, input_b, op_b\)"),
    ([], r"cell\.blocks: expected a non-empty list"),
])
def test_invalid_cells_name_the_block_and_field(blocks, match):
    with pytest.raises(InvalidSpecError, match=match):
        EnasCell(blocks)


def test_space_validation_names_what_is_outside_the_space():
    space = EnasCellSpace((8, 8, 1), 10, max_blocks=2, ops=["identity", "sep3x3", "max3x3"])
    with pytest.raises(InvalidSpecError, match=r"cell\.num_blocks: 3 is not in \[2, 2\]"):
        space.net(CELL)
    with pytest.raises(InvalidSpecError, match=r"cell\.blocks\[1\]\.op_a: op 'avg3x3' is not one of "
                                               r"the space's ops \(identity, sep3x3, max3x3\)"):
        space.net(CELL.blocks[:2])
    other = EnasNet((8, 8, 1), 10, CELL.blocks[:1] * 2, num_layers=5)
    with pytest.raises(InvalidSpecError, match=r"spec\.num_layers: 5 differs from the space's 3"):
        space.validate(other)
    with pytest.raises(ValueError, match=r"ops: \['sep7x7'\] must be distinct names .* unknown"):
        EnasCellSpace((8, 8, 1), 10, ops=["sep7x7"])
    with pytest.raises(InvalidSpecError, match=r"max_blocks: 1 is not >= 2"):
        EnasCellSpace((8, 8, 1), 10, max_blocks=1)


@pytest.mark.parametrize("change, match", [
    ({"version": 2}, r"version: EnasNet reads version 1, got 2"),
    ({"reduction_layers": [2, 1]}, r"reduction_layers: \[2, 1\] must be increasing"),
    ({"reduction_layers": [3]}, r"reduction_layers\[0\]: 3 is not in \[0, 2\]"),
    ({"filters": 0}, r"filters: 0 is not >= 1"),
    ({"cell": [[0, "sep3x3", 1, "identity"], [3, "sep3x3", 1, "identity"]]},
     r"cell\.blocks\[1\]\.input_a: 3 is not in \[0, 2\]"),
    ({"stem": 3}, r"enas_cell: unknown fields \['stem'\]"),
])
def test_malformed_json_names_the_field(change, match):
    data = json.loads(EnasNet((8, 8, 1), 10, CELL).to_json())
    data.update(change)
    with pytest.raises(InvalidSpecError, match=match):
        spec_from_json(json.dumps(data))


def test_missing_json_field_is_named():
    data = json.loads(EnasNet((8, 8, 1), 10, CELL).to_json())
    del data["cell"]
    with pytest.raises(InvalidSpecError, match="cell: missing"):
        spec_from_json(json.dumps(data))


# --- costs and the built model --------------------------------------------------------------


def test_costs_of_a_tiny_net_by_hand():
    # One normal cell of 4 channels on a 4x4x1 input; one block: sep3x3(k-1) + identity(k-2).
    spec = EnasNet((4, 4, 1), 3, [(1, "sep3x3", 0, "identity")], num_layers=1, filters=4,
                   reduction_layers=())
    report = cnas.estimate(spec)
    stem = 3 * 3 * 1 * 4 + 4 * 4              # conv + BN (4 numbers per channel)
    sep = 3 * 3 * 4 + 4 * 4 + 4 * 4           # depthwise + pointwise + BN
    out = 4 * 4 + 4 * 4                       # 1x1 output conv + BN
    dense = 4 * 3 + 3
    assert report.params == stem + sep + out + dense
    assert report.trainable_params == report.params - 2 * 4 * 3  # three BNs' moving stats
    hw = 16
    assert report.madds == hw * 4 * 9 + (hw * 4 * 9 + hw * 4 * 4) + hw * 4 * 4 + 4 * 3
    # Peak: the pointwise conv and the add each hold three 4x4x4 maps: the stem output (kept
    # for the add) and the op's input and output. The image (16 numbers) is dead by then.
    act = 16 * 4
    assert report.peak_activation_bytes == 4 * 3 * act
    assert report.memory_bytes == 4 * (report.params + act)


@pytest.mark.parametrize("shape, layers, filters, max_blocks", [
    ((8, 8, 1), 3, 8, 7), ((28, 28, 1), 3, 6, 4), ((9, 7, 3), 5, 3, 3), ((5, 5, 1), 4, 2, 3),
    ((8, 8, 1), 1, 4, 5),
])
def test_params_and_madds_are_exact_for_random_specs(shape, layers, filters, max_blocks):
    space = EnasCellSpace(shape, 10, num_layers=layers, filters=filters, min_blocks=1,
                          max_blocks=max_blocks)
    rng = np.random.default_rng(layers * 100 + filters)
    for _ in range(6):
        assert_costs_exact(space.sample(rng))


def test_a_cell_that_never_reads_k_minus_1_leaves_alternate_cells_out_exactly():
    spec = EnasNet((8, 8, 1), 10, [(0, "sep3x3", 0, "identity"), (2, "max3x3", 0, "avg3x3")],
                   num_layers=5, filters=4)
    assert [p.live for p in spec.layer_plan()] == [True, False, True, False, True]
    model = assert_costs_exact(spec)
    names = {layer.name for layer in model.layers}
    assert not any(n.startswith(("cell_1_", "cell_3_")) for n in names)
    assert "cell_2_calib0_reduce_path1" in names  # cell 2 reads cell 0 across reduction 1


def test_layer_names_are_deterministic():
    spec = EnasNet((8, 8, 1), 10, CELL, num_layers=3, filters=4)
    keras.backend.clear_session()
    first = [layer.name for layer in cnas.build_model(spec).layers]
    keras.backend.clear_session()
    assert [layer.name for layer in cnas.build_model(spec).layers] == first
    assert "cell_1_block_0_b_identity_reduce_bn" in first and "cell_2_out_conv" in first


def test_every_op_and_calibration_is_exact_and_exports_to_tflite_float_and_int8():
    from keras_cnas.export import to_tflite
    from keras_cnas.export.verify import predict_tflite

    # Every op, on cell inputs and on blocks, in normal and reduction cells (identity across a
    # reduction is a factorized reduction), and every calibration kind.
    assert set(OPS) == {"identity", "sep3x3", "sep5x5", "avg3x3", "max3x3"}
    cell = EnasCell([(0, "sep5x5", 1, "identity"), (2, "avg3x3", 1, "max3x3"),
                     (0, "identity", 3, "sep3x3")])
    spec = EnasNet((8, 8, 1), 4, cell, num_layers=2, filters=4, reduction_layers=(0,))
    assert [c.kind for p in spec.layer_plan() for c in p.calibrate] == [
        "conv", "conv", "reduce", "none"]
    model = assert_costs_exact(spec)
    x = np.random.default_rng(0).random((64, 8, 8, 1)).astype(np.float32)
    expected = model(x, training=False).numpy()
    float_out = predict_tflite(to_tflite(model, "none"), x)
    np.testing.assert_allclose(float_out, expected, atol=1e-5)
    int8_out = predict_tflite(to_tflite(model, "int8", representative_data=x, num_samples=32), x)
    assert int8_out.shape == expected.shape and np.abs(int8_out - expected).max() < 0.1


def test_estimates_are_fast_enough_for_a_controller():
    space = EnasCellSpace((32, 32, 3), 10)
    specs = [space.sample(np.random.default_rng(i)) for i in range(200)]
    started = time.perf_counter()
    for spec in specs:
        cnas.estimate(spec)
    # ~0.15 ms each on a loaded 2-core machine; the bound is 20x slack.
    assert (time.perf_counter() - started) / len(specs) < 3e-3


@pytest.mark.slow
def test_params_and_madds_are_exact_for_200_random_full_size_specs():
    rng = np.random.default_rng(7)
    for layers in (3, 5, 8, 11):
        space = EnasCellSpace((16, 16, 3), 10, num_layers=layers, filters=6)
        for _ in range(50):
            assert_costs_exact(space.sample(rng))
