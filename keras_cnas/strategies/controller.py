"""The ENAS / B-ENAS controller: a 2-layer LSTM that emits one categorical decision per
step of a space's categorical view, trained with REINFORCE.

Each step feeds the embedding of the previous decision (a learned start vector at step 0)
through the LSTM; a per-step linear head gives logits, shaped as ENAS does:
``tanh_constant * tanh(logits / temperature)`` (B-ENAS: 5.0 and 2.5), which keeps the policy
from collapsing early. Sampling draws the decisions by inverse CDF from uniforms the caller
supplies, so the strategy's NumPy RNG alone decides the samples (and resume is exact).

This is the one strategy module that needs TensorFlow; it imports it when a controller is
built, so ``import keras_cnas.strategies`` stays TensorFlow-free.
"""

from __future__ import annotations

import base64
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["Controller"]


class Controller:
    """An LSTM policy over a sequence of categorical decisions.

    Args:
        decision_sizes: the number of choices of each decision (``space.decision_sizes()``).
        lstm_size: hidden units of each LSTM layer (ENAS: 64).
        lstm_layers: stacked LSTM layers (B-ENAS: 2).
        temperature: logits are divided by it before the tanh (B-ENAS: 5.0).
        tanh_constant: the logits' bound after the tanh (B-ENAS: 2.5).
        learning_rate: Adam's step size (B-ENAS: 1e-3).
        seed: seeds the initial weights.

    Example:
        >>> controller = Controller([3, 2], lstm_size=8)
        >>> decisions, log_prob, entropy = controller.sample(np.array([0.1, 0.9]))
        >>> len(decisions), log_prob < 0, entropy > 0
        (2, True, True)
    """

    def __init__(self, decision_sizes: Sequence[int], *, lstm_size: int = 64,
                 lstm_layers: int = 2, temperature: float = 5.0, tanh_constant: float = 2.5,
                 learning_rate: float = 1e-3, seed: int = 0):
        from keras_cnas._keras import keras, tf

        sizes = [int(s) for s in decision_sizes]
        if not sizes or any(s < 1 for s in sizes):
            raise ValueError(f"decision_sizes: expected a non-empty list of positive choice counts, "
                             f"got {list(decision_sizes)!r}")
        self.decision_sizes = sizes
        self.lstm_size = int(lstm_size)
        self.lstm_layers = int(lstm_layers)
        self.temperature = float(temperature)
        self.tanh_constant = float(tanh_constant)
        self.learning_rate = float(learning_rate)
        self._tf = tf
        init = keras.initializers.RandomUniform(-0.1, 0.1, seed=seed)  # ENAS' initialiser
        self.cells = [keras.layers.LSTMCell(self.lstm_size, kernel_initializer=init,
                                            recurrent_initializer=init, name=f"lstm_{i}")
                      for i in range(self.lstm_layers)]
        self.start = tf.Variable(init((1, self.lstm_size)), name="start")
        # The last decision feeds no further step, so it needs no embedding.
        self.embeddings = [tf.Variable(init((size, self.lstm_size)), name=f"embedding_{t}")
                           for t, size in enumerate(sizes[:-1])]
        self.heads = [keras.layers.Dense(size, kernel_initializer=init, name=f"head_{t}")
                      for t, size in enumerate(sizes)]
        # Build every layer once so that the variables exist (and load_state can assign).
        state = self._zero_state(1)
        out = self.start
        for cell, s in zip(self.cells, state):
            out, _ = cell(out, s)
        for head in self.heads:
            head(out)
        self.optimizer = keras.optimizers.Adam(self.learning_rate)
        self.optimizer.build(self.trainable_variables)
        self._sample_fn = tf.function(self._sample_graph, reduce_retracing=True)
        self._train_fn = tf.function(self._train_graph, reduce_retracing=True)

    # --- the policy ----------------------------------------------------------------------

    @property
    def trainable_variables(self) -> list[Any]:
        variables = [self.start, *self.embeddings]
        for layer in (*self.cells, *self.heads):
            variables.extend(layer.trainable_variables)
        return variables

    def _zero_state(self, batch: int) -> list[list[Any]]:
        tf = self._tf
        zeros = tf.zeros((batch, self.lstm_size))
        return [[zeros, zeros] for _ in self.cells]

    def _step(self, inputs: Any, state: list[list[Any]], t: int) -> tuple[Any, list[list[Any]]]:
        tf = self._tf
        out, new_state = inputs, []
        for cell, s in zip(self.cells, state):
            out, s = cell(out, s)
            new_state.append(s)
        logits = self.heads[t](out) / self.temperature
        return self.tanh_constant * tf.tanh(logits), new_state

    def _sample_graph(self, uniforms: Any) -> tuple[Any, Any, Any]:
        tf = self._tf
        state, inputs = self._zero_state(1), self.start
        decisions, log_prob, entropy = [], tf.constant(0.0), tf.constant(0.0)
        for t in range(len(self.decision_sizes)):
            logits, state = self._step(inputs, state, t)
            log_p = tf.nn.log_softmax(logits)[0]
            p = tf.exp(log_p)
            # Inverse CDF; the min() guards u ~ 1 against a cumsum that rounds below it.
            choice = tf.minimum(tf.reduce_sum(tf.cast(tf.cumsum(p) < uniforms[t], tf.int32)),
                                self.decision_sizes[t] - 1)
            decisions.append(choice)
            log_prob += log_p[choice]
            entropy -= tf.reduce_sum(p * log_p)
            if t < len(self.embeddings):
                inputs = tf.gather(self.embeddings[t], choice)[tf.newaxis]
        return tf.stack(decisions), log_prob, entropy

    def _log_probs(self, decisions: Any) -> Any:
        """Sum over steps of log pi(decision) for a batch [B, T] of decision sequences."""
        tf = self._tf
        batch = tf.shape(decisions)[0]
        state = self._zero_state(batch)
        inputs = tf.repeat(self.start, batch, axis=0)
        total = tf.zeros((batch,))
        for t in range(len(self.decision_sizes)):
            logits, state = self._step(inputs, state, t)
            log_p = tf.nn.log_softmax(logits)
            total += tf.gather(log_p, decisions[:, t], batch_dims=1)
            if t < len(self.embeddings):
                inputs = tf.gather(self.embeddings[t], decisions[:, t])
        return total

    def _train_graph(self, decisions: Any, advantages: Any) -> Any:
        tf = self._tf
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(advantages * self._log_probs(decisions))
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    def sample(self, uniforms: np.ndarray) -> tuple[list[int], float, float]:
        """One decision sequence drawn with ``uniforms`` (one in [0, 1) per decision).

        Returns:
            (decisions, log-probability of the sequence, entropy of the policy along it).
        """
        u = np.asarray(uniforms, np.float32)
        if u.shape != (len(self.decision_sizes),):
            raise ValueError(f"uniforms: expected {len(self.decision_sizes)} values, got shape "
                             f"{u.shape}")
        decisions, log_prob, entropy = self._sample_fn(self._tf.constant(u))
        return [int(d) for d in decisions.numpy()], float(log_prob), float(entropy)

    def probabilities(self, decisions: Sequence[int]) -> float:
        """The policy's probability of one decision sequence."""
        batch = self._tf.constant([list(decisions)], self._tf.int32)
        return float(np.exp(self._log_probs(batch).numpy()[0]))

    def update(self, decisions: Sequence[Sequence[int]], advantages: Sequence[float]) -> float:
        """One REINFORCE step: ascend ``mean(advantage * log pi(decisions))``; returns the loss."""
        tf = self._tf
        batch = tf.constant(np.asarray(decisions, np.int32))
        adv = tf.constant(np.asarray(advantages, np.float32))
        return float(self._train_fn(batch, adv))

    # --- state -----------------------------------------------------------------------------

    def _all_variables(self) -> list[Any]:
        return [*self.trainable_variables, *self.optimizer.variables]

    def state_dict(self) -> dict[str, Any]:
        """Weights and Adam's state, as base64 float32 (exact, and a third of JSON floats)."""
        return {"variables": [_encode(v.numpy()) for v in self._all_variables()]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        variables = self._all_variables()
        values = state["variables"]
        if len(values) != len(variables):
            raise ValueError(f"controller state: expected {len(variables)} variables, got "
                             f"{len(values)}; it was saved by a controller of another shape")
        for variable, value in zip(variables, values):
            variable.assign(_decode(value).reshape(variable.shape).astype(
                variable.dtype.as_numpy_dtype))


def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, np.float32).tobytes()).decode("ascii")


def _decode(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), np.float32)
