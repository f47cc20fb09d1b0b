"""The compression methods: group lasso, variational dropout, MorphNet, iterative synthesis;
targets as hard bounds; the tfmot stage and the int8 export of a compressed model."""

import dataclasses

import numpy as np
import pytest

import keras_cnas as cnas
from keras_cnas._keras import keras, tf
from keras_cnas.compression import (
    METHODS,
    ChannelGraph,
    ChannelGroupLasso,
    ChannelNoise,
    GroupLasso,
    IterativeSynthesis,
    ProximalStep,
    Target,
    ToleranceExceededError,
    TrainingConfig,
    compress,
    m_by_n_fraction,
    model_costs,
    prune_m_by_n,
    prune_to_bounds,
    quantization_aware,
    shrink,
)
from keras_cnas.compression.training import accuracy, fit
from keras_cnas.errors import InfeasibleConstraintsError
from keras_cnas.export import to_tflite, verify
from keras_cnas.spaces import reference

L = keras.layers


def cifar_shaped(n_train=96, n_test=32, seed=0):
    """Random CIFAR-shaped images whose class is the brightest colour channel (learnable)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n_train + n_test, 32, 32, 3), dtype=np.uint8)
    y = (x.reshape(len(x), -1, 3).mean(axis=1).argmax(axis=1)).astype(np.int32)
    return cnas.data.from_arrays(x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                                 validation_split=0.25, seed=seed, class_names=["r", "g", "b"])


# --- the group lasso regulariser ------------------------------------------------------------


def test_group_lasso_is_lambda_times_the_sum_of_filter_or_channel_norms():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 4, 5)).astype("float32")
    filters = np.sqrt((kernel ** 2).sum(axis=(0, 1, 2)))
    channels = np.sqrt((kernel ** 2).sum(axis=(0, 1, 3)))
    assert float(GroupLasso(0.1)(kernel)) == pytest.approx(0.1 * filters.sum(), rel=1e-5)
    assert float(GroupLasso(0.1, "channels")(kernel)) == pytest.approx(0.1 * channels.sum(), rel=1e-5)
    dense = rng.normal(size=(6, 2)).astype("float32")
    assert float(GroupLasso(1.0)(dense)) == pytest.approx(np.linalg.norm(dense, axis=0).sum(), rel=1e-5)
    # The proximal operator zeroes a whole group whose norm is below step * l, shrinks the rest.
    small = np.array([[0.1, 3.0], [0.1, 4.0]], "float32")
    out = GroupLasso(1.0).prox(small, 1.0).numpy()
    assert (out[:, 0] == 0).all() and np.allclose(out[:, 1], small[:, 1] * (1 - 1 / 5))


def test_group_lasso_works_as_a_keras_regulariser_and_survives_saving(tmp_path):
    model = keras.Sequential([keras.Input((4, 4, 2)),
                              L.Conv2D(3, 3, kernel_regularizer=GroupLasso(0.5, "channels"),
                                       name="conv"), L.Flatten(), L.Dense(2)])
    expected = 0.5 * np.linalg.norm(
        np.moveaxis(model.get_layer("conv").kernel.numpy(), 2, -1).reshape(-1, 2), axis=0).sum()
    assert float(tf.add_n(model.losses)) == pytest.approx(expected, rel=1e-5)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    regularizer = loaded.get_layer("conv").kernel_regularizer
    assert isinstance(regularizer, GroupLasso) and regularizer.get_config() == {"l": 0.5,
                                                                                "axis": "channels"}
    with pytest.raises(ValueError, match="axis: expected one of"):
        GroupLasso(0.1, "rows")
    with pytest.raises(ValueError, match="l: expected a non-negative strength"):
        GroupLasso(-1.0)


def test_group_lasso_drives_whole_filters_to_exactly_zero_on_a_toy_problem():
    """Digits need few of 24 filters: proximal group lasso zeroes whole filters (kernel
    slice and bias), the rest still classify, and removing the zeros changes nothing."""
    data = cnas.data.load("digits")
    model = keras.Sequential([keras.Input((8, 8, 1)),
                              L.Conv2D(24, 3, padding="same", activation="relu", name="conv"),
                              L.Flatten(), L.Dense(10, activation="softmax")])
    keras.utils.set_random_seed(0)
    training = TrainingConfig(epochs=8, batch_size=32, learning_rate=0.05, optimizer="sgd_nesterov")
    graph = ChannelGraph(model)
    lasso = ChannelGroupLasso(model, graph, l=0.1)
    fit(model, data, training, callbacks=[ProximalStep(lasso)])
    kernel, bias = (w.numpy() for w in model.get_layer("conv").weights)
    zero = [u for u in range(24) if not kernel[..., u].any() and bias[u] == 0]
    assert len(zero) >= 6, f"only {len(zero)} whole filters reached zero"
    assert len(zero) < 24
    assert accuracy(model, data) > 0.75
    small = shrink(model, {"conv": [u for u in range(24) if u not in zero]})
    np.testing.assert_allclose(small.predict(data.x_test[:64], verbose=0),
                               model.predict(data.x_test[:64], verbose=0), atol=1e-6)


def test_exempt_units_keep_every_group_and_the_residual_streams_alive():
    """An overwhelming penalty zeroes every gamma, which makes a residual network's output
    independent of its input (and gets no gradient back); with ``exempt`` the strongest
    units of each group pass through the proximal step untouched and the rest go to zero."""
    rng = np.random.default_rng(0)
    x = rng.random((2, 32, 32, 3)).astype("float32")
    outputs = {}
    for exempt in (None, 2):
        model = cnas.build_model(reference.resnet_cifar(8, (32, 32, 3), 3, width=4))
        for layer in model.layers:  # distinct gammas: no ties among the strongest units
            if isinstance(layer, L.BatchNormalization):
                layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape).astype("float32"))
        graph = ChannelGraph(model)
        lasso = ChannelGroupLasso(model, graph, l=1e6, parameters="gamma",
                                  exempt=None if exempt is None else [exempt] * len(graph.prunable))
        before = lasso.norms()
        ProximalStep(lasso).apply(1.0)
        after = lasso.norms()
        for b, a in zip(before, after):
            strongest = np.argsort(-b)[:exempt or 0]
            np.testing.assert_allclose(a[strongest], b[strongest], rtol=1e-6)
            assert not np.delete(a, strongest).any()
        outputs[exempt] = model(x, training=False).numpy()
    np.testing.assert_allclose(outputs[None][0], outputs[None][1], atol=1e-6)  # dead
    assert np.abs(outputs[2][0] - outputs[2][1]).max() > 1e-4  # still reads its input
    model = cnas.build_model(reference.resnet_cifar(8, (32, 32, 3), 3, width=4))
    with pytest.raises(ValueError, match="exempt: one count in \\[0, group size\\] per "
                                         "prunable group"):
        ChannelGroupLasso(model, ChannelGraph(model), 1.0, exempt=[5])
    with pytest.raises(ValueError, match="min_width: expected a fraction in \\[0, 1\\) such as "
                                         "0.25, got 1.0"):
        METHODS.get("morphnet")(TrainingConfig(), TrainingConfig(), min_width=1.0)


# --- targets and selection ----------------------------------------------------------------------


def test_target_fractions_are_validated_and_become_hard_bounds():
    baseline = cnas.estimate(reference.resnet_cifar(20))
    bounds = Target(flops=0.33, params=0.5).bounds(baseline)
    assert bounds.to_dict() == {"max_flops": 0.33 * baseline.flops,
                                "max_params": 0.5 * baseline.params}
    with pytest.raises(ValueError, match="flops: expected a fraction of the baseline in \\(0, 1\\]"):
        Target(flops=1.5)
    with pytest.raises(ValueError, match="bound at least one cost"):
        Target()
    with pytest.raises(ValueError, match="unknown cost\\(s\\) \\['latency'\\]"):
        Target.from_dict({"latency": 0.5})


def test_prune_to_bounds_meets_the_bound_exactly_priced_and_refuses_the_impossible():
    model = cnas.build_model(reference.resnet_cifar(20, width=8))
    graph = ChannelGraph(model)
    rng = np.random.default_rng(0)
    scores = [rng.random(g.size) for g in graph.groups]
    baseline = model_costs(model)
    bounds = Target(flops=0.33).bounds(baseline)
    selection = prune_to_bounds(graph, scores, bounds, baseline=baseline)
    assert bounds.satisfied(selection.costs)
    small = shrink(model, selection.as_keep(graph), graph=graph)
    assert model_costs(small) == selection.costs
    # Bisection: keeping one more atom would break the bound (the fewest removals).
    assert selection.costs.flops > 0.25 * baseline.flops
    with pytest.raises(InfeasibleConstraintsError,
                       match="no shrunk model can meet flops.*relax the target to at least "
                             "flops fraction 0.0"):
        prune_to_bounds(graph, scores, Target(flops=0.001).bounds(baseline), baseline=baseline)


def test_training_config_rejects_bad_values_naming_them():
    with pytest.raises(ValueError, match="epochs: expected a non-negative integer, got -1"):
        TrainingConfig(epochs=-1)
    with pytest.raises(ValueError, match="optimizer: expected one of \\('adam', 'sgd_nesterov'\\)"):
        TrainingConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="learning_rate: expected a positive number"):
        TrainingConfig(learning_rate=0)


# --- the four methods ------------------------------------------------------------------------------


def quick_method(name, **extra):
    cls = METHODS.get(name)
    training = dataclasses.replace(cls.DEFAULT_TRAINING, epochs=1, batch_size=24)
    if name == "synthesis":
        extra.setdefault("steps", 2)
    elif name != "morphnet":
        extra.setdefault("rounds", 2)
    return cls(training, TrainingConfig(epochs=1, batch_size=24), **extra)


@pytest.fixture(scope="module")
def resnet_cifar_shaped():
    """A thin ResNet-8 (every structure of ResNet-20: projections, residual streams) for
    32x32x3 input, briefly trained on CIFAR-shaped data; fast enough for every method."""
    data = cifar_shaped()
    model = cnas.build_model(reference.resnet_cifar(8, (32, 32, 3), 3, width=4))
    fit(model, data, TrainingConfig(epochs=2, batch_size=24))
    return model, data


def check_result(result, model, fraction=1 / 3):
    costs = model_costs(result.model)
    assert result.target_met and costs.flops <= fraction * result.baseline_costs.flops
    assert costs == result.costs and costs.params == result.model.count_params()
    assert 0 <= result.accuracy <= 1 and result.finetune_seconds > 0
    assert result.history and result.to_dict()["target_met"] is True
    assert result.baseline_costs == model_costs(model)


@pytest.mark.parametrize("name", METHODS.names())
def test_each_method_meets_a_third_of_the_flops_as_a_hard_bound(name, resnet_cifar_shaped):
    model, data = resnet_cifar_shaped
    before = [w.numpy().copy() for w in model.weights]
    result = quick_method(name).compress(model, data, Target(flops=1 / 3), seed=1)
    check_result(result, model)
    assert result.fraction("flops") > 0.15, "the search should not shrink far past the target"
    assert all((w.numpy() == b).all() for w, b in zip(model.weights, before))  # untouched


_CIFAR_BASELINES = {}


def cifar_baseline(depth, shared_data):
    """ResNet-``depth`` at full width trained briefly on a 2,000-image CIFAR-10 subset
    (one per depth for the module)."""
    if depth not in _CIFAR_BASELINES:
        data = cnas.data.load("cifar10", shared_data / "cifar10-jpeg" / "CIFAR-10-images.tar.gz",
                              max_train_examples=2000, max_per_class=300)
        model = cnas.build_model(reference.resnet_cifar(depth))
        fit(model, data, TrainingConfig(epochs=4))
        _CIFAR_BASELINES[depth] = model, data
    return _CIFAR_BASELINES[depth]


@pytest.mark.slow
@pytest.mark.parametrize("depth", [20, 32])
@pytest.mark.parametrize("name", METHODS.names())
def test_each_method_meets_a_third_of_the_flops_of_resnet20_and_32_on_cifar10(
        name, depth, shared_data):
    """The issue's criterion at full width on real CIFAR-10, with the int8 export."""
    model, data = cifar_baseline(depth, shared_data)
    method = quick_method(name)
    method.finetune = TrainingConfig(epochs=2)
    result = method.compress(model, data, Target(flops=1 / 3))
    check_result(result, model)
    assert result.accuracy > 0.15  # above chance (0.1) after a short fine-tune
    flatbuffer = to_tflite(result.model, "int8", representative_data=data)
    assert verify(flatbuffer, data, result.model).agreement > 0.8


def test_an_unreachable_target_is_refused_before_any_training(resnet_cifar_shaped):
    model, data = resnet_cifar_shaped
    with pytest.raises(InfeasibleConstraintsError, match="with one filter left per prunable group"):
        compress(model, data, "group_lasso", {"params": 0.01})
    with pytest.raises(KeyError, match="unknown compression method 'lasso'; known compression "
                                       "methods: group_lasso, morphnet, synthesis, vardrop"):
        compress(model, data, "lasso")


def test_synthesis_checks_its_tolerance_on_a_validation_split(resnet_cifar_shaped):
    model, _ = resnet_cifar_shaped
    no_validation = cifar_shaped()
    no_validation = dataclasses.replace(no_validation, x_val=no_validation.x_val[:0],
                                        y_val=no_validation.y_val[:0])
    method = IterativeSynthesis(TrainingConfig(epochs=1), TrainingConfig(epochs=0), tolerance=0.02)
    with pytest.raises(ValueError, match="tolerance: the accuracy tolerance is checked on the "
                                         "validation split"):
        method.compress(model, no_validation, Target(flops=0.5))


def test_synthesis_stops_when_accuracy_falls_below_the_tolerance():
    data = cnas.data.load("digits")
    model = keras.Sequential([keras.Input((8, 8, 1)),
                              L.Conv2D(16, 3, padding="same", activation="relu", name="conv"),
                              L.Flatten(), L.Dense(10, activation="softmax")])
    fit(model, data, TrainingConfig(epochs=4, batch_size=32))
    assert accuracy(model, data, "validation") > 0.85
    # One step to 10 % of the parameters, no fine-tuning in between: the accuracy must fall.
    method = IterativeSynthesis(TrainingConfig(epochs=0), TrainingConfig(epochs=0), steps=1,
                                tolerance=0.05)
    with pytest.raises(ToleranceExceededError,
                       match="after step 1 of 1 validation accuracy is .* more than "
                             "tolerance=0.05 below the baseline's") as caught:
        method.compress(model, data, Target(params=0.1))
    assert caught.value.model is None and caught.value.history[0]["step"] == 1


def test_channel_noise_is_training_only_and_its_kl_falls_as_alpha_grows():
    layer = ChannelNoise(L.Dense(4), init_log_alpha=0.0)
    x = np.ones((64, 3), "float32")
    clean = layer(x, training=False).numpy()
    noisy = layer(x, training=True).numpy()
    assert np.allclose(clean, layer.layer(x).numpy()) and not np.allclose(noisy, clean)
    # Noise is per example and channel: its relative spread is exp(log_alpha / 2) = 1.
    assert np.std(noisy / clean) == pytest.approx(1.0, abs=0.25)
    kls = []
    for la in (-6.0, 0.0, 3.0):
        layer.log_alpha_scaled.assign(np.full(4, la / 100.0, "float32"))
        kls.append(float(layer.kl().numpy()[0]))
    assert kls[0] > kls[1] > kls[2] > 0


# --- tfmot stage and export ---------------------------------------------------------------------


def test_two_four_pruning_and_qat_survive_into_the_int8_tflite():
    data = cnas.data.load("digits")
    model = keras.Sequential([keras.Input((8, 8, 1)),
                              L.Conv2D(8, 3, padding="same", use_bias=False, name="stem"),
                              L.BatchNormalization(), L.ReLU(),
                              L.Conv2D(8, 3, padding="same", name="conv"), L.ReLU(),
                              L.Flatten(), L.Dense(10, activation="softmax", name="out")])
    fit(model, data, TrainingConfig(epochs=2, batch_size=64))
    quick = TrainingConfig(epochs=1, batch_size=64, learning_rate=1e-4)
    sparse = prune_m_by_n(model, data, quick, (2, 4))
    assert [type(layer).__name__ for layer in sparse.layers] == \
        [type(layer).__name__ for layer in model.layers]  # wrappers stripped
    assert m_by_n_fraction(sparse.get_layer("conv").kernel.numpy()) == 1.0
    assert m_by_n_fraction(sparse.get_layer("out").kernel.numpy()) == 1.0
    np.testing.assert_array_equal(sparse.get_layer("stem").kernel.numpy() == 0,
                                  model.get_layer("stem").kernel.numpy() == 0)  # 1 input channel
    qat = quantization_aware(sparse, data, quick, preserve_sparsity=True)
    flatbuffer = to_tflite(qat, "int8", representative_data=data)
    report = verify(flatbuffer, data, qat)
    assert report.agreement > 0.9
    # The 2:4 zeros are still there in the int8 weights (TFLite: [c_out, h, w, c_in]).
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    weights = [interpreter.get_tensor(t["index"]) for t in interpreter.get_tensor_details()
               if t["dtype"] == np.int8 and tuple(t["shape"]) == (8, 3, 3, 8)]  # conv's kernel
    assert weights and all(m_by_n_fraction(np.moveaxis(w, 0, -1)) == 1.0 for w in weights)
    with pytest.raises(ValueError, match="sparsity_m_by_n: expected \\(m, n\\) with 0 < m < n"):
        prune_m_by_n(model, data, quick, (4, 2))
