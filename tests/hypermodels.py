"""KerasTuner-style build functions for the HyperSpace tests (importable by workers)."""

from keras_cnas._keras import keras


def build_small_cnn(hp):
    """A conv net on 8x8x1 digits: a layer count, per-layer widths, a conditional dropout."""
    model = keras.Sequential([keras.Input((8, 8, 1))])
    for i in range(hp.Int("conv_layers", 1, 2)):
        model.add(keras.layers.Conv2D(hp.Choice(f"filters_{i}", [4, 8, 16]), 3, padding="same",
                                      activation="relu"))
    model.add(keras.layers.Flatten())
    if hp.Boolean("dropout"):
        with hp.conditional_scope("dropout", [True]):
            model.add(keras.layers.Dropout(hp.Float("rate", 0.1, 0.5, step=0.2)))
    model.add(keras.layers.Dense(hp.Int("units", 16, 64, step=16), activation="relu"))
    model.add(keras.layers.Dense(10, activation="softmax"))
    return model


def build_compiled(hp):
    """Compiles its model, as KerasTuner build functions do: the learning rate is searched."""
    model = keras.Sequential([
        keras.layers.Flatten(),  # no Input: HyperSpace builds it for the data's shape
        keras.layers.Dense(hp.Choice("units", [8, 32]), activation=hp.Choice("act", ["relu", "tanh"])),
        keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-2, sampling="log")),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build_lstm(hp):
    """A layer the cost code cannot price (LSTM): only params are known."""
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Reshape((8, 8)),
                              keras.layers.LSTM(hp.Int("units", 4, 8, step=4)),
                              keras.layers.Dense(10, activation="softmax")])
    return model


def build_broken(hp):
    """Fails with its default values."""
    hp.Int("units", 1, 4)
    raise ValueError("no model today")


class LearningRateLog(keras.callbacks.Callback):
    """Records the optimizer's learning rate at the start of each fit."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_begin(self, logs=None):
        self.rates.append(float(keras.backend.get_value(self.model.optimizer.learning_rate)))


try:  # a real keras_tuner.HyperModel, when keras_tuner is installed
    import keras_tuner

    class DenseHyperModel(keras_tuner.HyperModel):
        def build(self, hp):
            return keras.Sequential([
                keras.Input((8, 8, 1)), keras.layers.Flatten(),
                keras.layers.Dense(hp.Int("units", 16, 32, step=16), activation="relu"),
                keras.layers.Dense(10, activation="softmax")])

    kt_hypermodel = DenseHyperModel()
except ImportError:
    pass


class EpochCounter(keras.callbacks.Callback):
    """Counts epochs across trials (a module-level instance, named 'hypermodels:EPOCHS')."""

    def __init__(self):
        super().__init__()
        self.epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1


EPOCHS = EpochCounter()


def build_activation(hp):
    """An unordered Choice of three strings next to an ordered Int."""
    return keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Flatten(),
        keras.layers.Dense(hp.Int("units", 8, 24, step=8),
                           activation=hp.Choice("act", ["relu", "tanh", "elu"])),
        keras.layers.Dense(10, activation="softmax")])
