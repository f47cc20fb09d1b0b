"""The ENAS weight-sharing supernet: sharing, training, equivalence with the built model, resume."""

import re

import numpy as np
import pytest

import keras_cnas as cnas
from keras_cnas._keras import keras
from keras_cnas.errors import InvalidSpecError
from keras_cnas.spaces import EnasCell, EnasCellSpace, EnasNet
from keras_cnas.training.supernet import SharedCellSupernet

SPACE = EnasCellSpace((8, 8, 1), 10, filters=8, max_blocks=3)
A = EnasCell([(0, "sep3x3", 1, "sep5x5"), (2, "avg3x3", 1, "identity")])
B = EnasCell([(0, "sep3x3", 0, "sep5x5"), (2, "sep3x3", 1, "identity")])


@pytest.fixture(scope="module")
def digits():
    return cnas.data.load("digits")


@pytest.fixture(scope="module")
def batch(digits):
    return digits.x_train[:64], digits.y_train[:64]


def test_two_cells_share_the_variables_of_their_common_block_inputs_and_ops():
    net = SharedCellSupernet(SPACE, trace_after=None)
    a, b = net.variables_for(A), net.variables_for(B)
    shared = net.variable("cell_0/block_0/a/in0/sep3x3/depthwise")
    assert any(v is shared for v in a) and any(v is shared for v in b)
    # Same block, side and op but another input: its own weights (ENAS indexes by input).
    only_a = net.variable("cell_0/block_0/b/in1/sep5x5/pointwise")
    only_b = net.variable("cell_0/block_0/b/in0/sep5x5/pointwise")
    assert any(v is only_a for v in a) and not any(v is only_a for v in b)
    assert any(v is only_b for v in b) and not any(v is only_b for v in a)
    common = {id(v) for v in a} & {id(v) for v in b}
    assert id(net.variable("stem/kernel")) in common and id(net.variable("head/kernel")) in common
    # One set of weights per (layer, block, side, input, op), made once.
    assert len(net.shared_variables) == len({id(v) for v in net.shared_variables})


def test_a_step_changes_exactly_the_cells_variables_and_the_other_cell_sees_them(batch):
    net = SharedCellSupernet(SPACE, trace_after=None)
    before = net.get_weights()
    net.train_step(A, *batch)
    after = net.get_weights()
    touched = {v.name.split(":")[0] for v in net.variables_for(A)}
    changed = {k for k in before if not k.startswith("momentum/") and k != "iterations"
               and not np.array_equal(before[k], after[k])}
    assert changed == touched
    moved = {k[len("momentum/"):] for k in before if k.startswith("momentum/")
             and not np.array_equal(before[k], after[k])}
    assert moved == touched
    # B reads the updated shared weight: sharing is by object, not by copy.
    shared = net.variable("cell_0/block_0/a/in0/sep3x3/depthwise")
    assert any(v is shared for v in net.variables_for(B))
    assert not np.array_equal(shared.numpy(), before["cell_0/block_0/a/in0/sep3x3/depthwise"])


def test_variables_of_a_cell_add_up_to_its_networks_trainable_params():
    net = SharedCellSupernet(SPACE, trace_after=None)
    rng = np.random.default_rng(0)
    for _ in range(20):
        cell = SPACE.sample_cell(rng)
        total = sum(v.shape.num_elements() for v in net.variables_for(cell))
        assert total == cnas.estimate(SPACE.net(cell)).trainable_params, cell.key()
    # A cell that never reads k-1 leaves layer 1 out of the network, and of the step.
    dead = EnasCell([(0, "sep3x3", 0, "avg3x3"), (2, "sep3x3", 0, "identity")])
    assert not any(v.name.startswith("cell_1/") for v in net.variables_for(dead))


def _supernet_prefix(keras_prefix: str, cell: EnasCell) -> str:
    """A built layer's name (suffix removed) -> the supernet's variable prefix, e.g.
    ``cell_1_block_0_b_identity`` -> ``cell_1/block_0/b/in1/identity`` (the input is the cell's)."""
    match = re.fullmatch(r"cell_(\d+)_block_(\d+)_([ab])_(\w+)", keras_prefix)
    if match:
        k, j, side, op = match.groups()
        index = cell.blocks[int(j)].sides()["ab".index(side)][0]
        return f"cell_{k}/block_{j}/{side}/in{index}/{op}"
    return re.sub(r"^cell_(\d+)_", r"cell_\1/", keras_prefix)


def _built_with_supernet_weights(net: SharedCellSupernet, cell: EnasCell) -> keras.Model:
    keras.backend.clear_session()
    model = cnas.build_model(SPACE.net(cell))
    w = net.get_weights()
    for layer in model.layers:
        prefix, _, suffix = layer.name.rpartition("_")
        prefix = _supernet_prefix(prefix.removesuffix("_reduce"), cell) if prefix else ""
        if isinstance(layer, keras.layers.BatchNormalization):
            _, _, mean, variance = layer.get_weights()
            layer.set_weights([w[f"{prefix}/bn/gamma"], w[f"{prefix}/bn/beta"], mean, variance])
        elif isinstance(layer, keras.layers.SeparableConv2D):
            layer.set_weights([w[f"{prefix}/depthwise"], w[f"{prefix}/pointwise"]])
        elif isinstance(layer, keras.layers.Conv2D) and layer.name.endswith("_out_conv"):
            kernels = [w[f"{prefix}/kernel_{j}"] for j in cell.unused_blocks]
            layer.set_weights([np.concatenate(kernels, axis=2)])
        elif isinstance(layer, keras.layers.Conv2D):
            layer.set_weights([w[f"{prefix}/{'kernel' if suffix == 'conv' else suffix}"]])
        elif isinstance(layer, keras.layers.Dense):
            layer.set_weights([w["head/kernel"], w["head/bias"]])
        else:
            assert not layer.weights, layer.name
    return model


def test_a_cells_forward_pass_is_the_built_networks(batch):
    net = SharedCellSupernet(SPACE, trace_after=None, seed=3)
    rng = np.random.default_rng(5)
    for _ in range(3):  # weights other than the initial ones
        net.train_step(SPACE.sample_cell(rng), *batch)
    # Every op, a factorized reduction as an op and as a calibration, unused blocks 1 and 2.
    cell = EnasCell([(0, "sep5x5", 1, "identity"), (2, "avg3x3", 0, "max3x3"),
                     (0, "identity", 2, "sep3x3")])
    model = _built_with_supernet_weights(net, cell)
    x = batch[0]
    # Both normalize with the batch's statistics (training=True in Keras).
    np.testing.assert_allclose(net.predict(cell, x), model(x, training=True).numpy(), atol=2e-5)


def test_train_step_reduces_the_loss_and_evaluate_scores_the_trained_cell(batch):
    net = SharedCellSupernet(SPACE, trace_after=None, decay_steps=50)
    untrained = net.evaluate(A, *batch)
    losses = [net.train_step(A, *batch) for _ in range(12)]
    assert losses[-1] < 0.6 * losses[0], losses
    assert net.step == 12
    accuracy = net.evaluate(A, *batch)
    assert accuracy > max(0.5, untrained)  # trained on this very batch
    assert net.evaluate(SPACE.net(A), *batch) == accuracy  # an EnasNet of the frame works too


def test_compiled_steps_compute_what_eager_steps_compute(batch):
    eager = SharedCellSupernet(SPACE, trace_after=None, seed=1)
    compiled = SharedCellSupernet(SPACE, trace_after=1, seed=1)
    for cell in (A, B, A):
        assert compiled.train_step(cell, *batch) == pytest.approx(
            eager.train_step(cell, *batch), rel=1e-5)
    x = batch[0][:40]  # another batch size: the compiled function takes any
    np.testing.assert_allclose(compiled.predict(A, x), eager.predict(A, x), atol=1e-5)
    a, b = eager.get_weights(), compiled.get_weights()
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-4


def test_learning_rate_follows_the_cosine_from_lr_max_to_lr_min():
    net = SharedCellSupernet(SPACE, decay_steps=100, lr_max=0.05, lr_min=0.001)
    weights = net.get_weights()
    rates = []
    for step in (0, 50, 100, 1000):
        net.set_weights({**weights, "iterations": np.asarray(step)})
        rates.append(net.learning_rate)
    assert rates == pytest.approx([0.05, 0.0255, 0.001, 0.001])


def test_save_and_load_resume_exactly(batch, tmp_path):
    net = SharedCellSupernet(SPACE, trace_after=None, decay_steps=40)
    for cell in (A, B):
        net.train_step(cell, *batch)
    path = net.save(tmp_path / "supernet.npz")
    resumed = SharedCellSupernet(SPACE, trace_after=None, decay_steps=40)
    resumed.load(path)
    assert resumed.step == 2 and resumed.learning_rate == net.learning_rate
    saved = net.get_weights()
    assert all(np.array_equal(saved[k], v) for k, v in resumed.get_weights().items())
    assert resumed.train_step(A, *batch) == net.train_step(A, *batch)
    continued = net.get_weights()
    assert all(np.array_equal(continued[k], v) for k, v in resumed.get_weights().items())
    other = SharedCellSupernet(SPACE, decay_steps=41)
    with pytest.raises(ValueError, match=r"saved by a supernet with other settings \(decay_steps "
                                         r"differ\)"):
        other.load(path)
    with pytest.raises(FileNotFoundError, match="no supernet file at"):
        other.load(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match=r"missing \['cell_0/"):
        other.set_weights({"iterations": np.asarray(0)})


def test_bad_inputs_say_what_to_fix(batch):
    net = SharedCellSupernet(SPACE, trace_after=None)
    x, y = batch
    with pytest.raises(ValueError, match=r"x: expected a batch of shape \(n, 8, 8, 1\)"):
        net.train_step(A, x[:, :4], y)
    with pytest.raises(ValueError, match=r"y: expected 64 integer labels"):
        net.train_step(A, x, y[:10])
    with pytest.raises(InvalidSpecError, match=r"cell\.num_blocks: 4 is not in \[2, 3\]"):
        net.train_step(EnasCell(A.blocks + B.blocks), x, y)
    with pytest.raises(InvalidSpecError, match=r"spec\.filters: 16 differs"):
        net.evaluate(EnasNet((8, 8, 1), 10, A, filters=16), x, y)
    with pytest.raises(TypeError, match="cell: expected an EnasCell"):
        net.predict([(0, "sep3x3", 1, "identity")], x)
    with pytest.raises(ValueError, match=r"lr_min: 0.1 is above lr_max=0.05"):
        SharedCellSupernet(SPACE, lr_min=0.1)
    with pytest.raises(ValueError, match=r"decay_steps: expected a positive int"):
        SharedCellSupernet(SPACE, decay_steps=0)
    with pytest.raises(ValueError, match=r"trace_after: expected a positive int .* None never"):
        SharedCellSupernet(SPACE, trace_after=0)
    with pytest.raises(TypeError, match="space: expected an EnasCellSpace"):
        SharedCellSupernet(cnas.spaces.DescriptorSpace((8, 8, 1), 10))
