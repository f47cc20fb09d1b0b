"""B-ENAS with weight sharing (Xu et al. 2019, Algorithms 1-4).

Algorithm 1 alternates, for ``epochs`` epochs,

* **TrainChild** (Algorithm 2): for each mini-batch, the controller samples a cell and the
  shared weights that cell uses take one step (:class:`SharedCellSupernet`);
* **TrainController** (Algorithm 3): ``controller_samples`` cells are sampled, each scored
  with the shared weights on a validation mini-batch, and the controller takes a
  policy-gradient step on ``accuracy - alpha * penalty(costs)`` (eqs. 2-3).

Then **SelectCell** (Algorithm 4) samples ``select_samples`` cells, keeps those whose final
network meets the hard constraints, scores them on the validation split and picks the
highest ``accuracy x cost`` as the paper does (``select_by="accuracy_x_cost"``: it favours
the larger feasible cells) or the highest accuracy (``select_by="accuracy"``). The chosen
cell's final network (``final_layers`` deep) is trained from scratch by the ordinary search
engine, so it gets the trial store, ``summary.json``, the retrained ``best/`` model and
``--export``. This module is that driver; it sits in the engine because it runs the
engine's loop (``keras_cnas.search(space, strategy=BEnas(...))`` calls :func:`run_benas`).

Costs the penalty and the constraints see are those of the *final* network (what gets
deployed): every analytic cost, plus ``eval_ms``, the measured time of the shared-weights
forward pass that scored the cell (milliseconds per validation batch), known only once the
cell runs. When ``eval_ms`` is bounded, the supernet runs every cell eagerly, so that a
compiled (faster) repeat cannot bias the timing. A search is checkpointed after every epoch (``search_dir/benas/``) and resumes
from the last finished epoch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pathlib
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from keras_cnas.costs import Constraints, CostPenalty, estimate
from keras_cnas.data import Dataset
from keras_cnas.engine.callbacks import CallbackList, ProgressPrinter, SearchCallback
from keras_cnas.errors import InfeasibleConstraintsError
from keras_cnas.spaces.enas_cell import EnasCellSpace, EnasNet
from keras_cnas.strategies.benas import BEnas, BEnasConfig, config_repr

logger = logging.getLogger(__name__)

__all__ = ["BEnasConfig", "BEnasSearch", "run_benas"]

#: The measured cost B-ENAS adds to the analytic ones.
MEASURED = "eval_ms"


class BEnasSearch:
    """B-ENAS: a weight-sharing REINFORCE search over ENAS cells under cost constraints.

    Args:
        space: the cell space while searching (B-ENAS: 3 layers).
        constraints: hard bounds on the final network (checked by SelectCell and by the
            final training, also priced by the reward's penalty).
        config: :class:`BEnasConfig`.

    Example (a few seconds; see ``tools/search.py --strategy=benas`` for a real run):
        >>> from keras_cnas.spaces import EnasCellSpace
        >>> space = EnasCellSpace((8, 8, 1), 10, filters=8, max_blocks=3)
        >>> search = BEnasSearch(space, Constraints(max_params=20_000),
        ...                      BEnasConfig(epochs=1, child_steps=2, controller_samples=2,
        ...                                  select_samples=2, final_layers=3, lstm_size=8))
        >>> search.final_space.num_layers
        3
    """

    def __init__(self, space: EnasCellSpace, constraints: Constraints | None = None,
                 config: BEnasConfig | None = None):
        if not isinstance(space, EnasCellSpace):
            raise ValueError(f"space: B-ENAS searches ENAS cells; expected an EnasCellSpace, got "
                             f"{type(space).__name__} (use --space=enas_cell)")
        self.space = space
        self.constraints = constraints or Constraints()
        self.config = config or BEnasConfig()
        self.rule = CostPenalty({**self.constraints.bounds, **self.config.penalty_bounds},
                                alpha=self.config.alpha, beta=self.config.beta)
        final = {**space.get_config(), "num_layers": self.config.final_layers,
                 "reduction_layers": None}
        if self.config.final_filters is not None:
            final["filters"] = self.config.final_filters
        self.final_space = EnasCellSpace(**final)

    def __repr__(self) -> str:
        return config_repr("BEnasSearch", self.config)

    # --- costs and scores -------------------------------------------------------------------

    def final_net(self, spec: EnasNet) -> EnasNet:
        return self.final_space.net(spec.cell)

    def costs(self, spec: EnasNet, eval_ms: float | None = None) -> dict[str, float]:
        """The final network's analytic costs (and the measured ``eval_ms``)."""
        costs = {k: float(v) for k, v in estimate(self.final_net(spec)).as_dict().items()
                 if v is not None}
        if eval_ms is not None:
            costs[MEASURED] = float(eval_ms)
        return costs

    def _score(self, supernet: Any, spec: EnasNet, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(accuracy with the shared weights, milliseconds of the forward pass per batch)."""
        # Near-equal parts of at least batch_size: BatchNorm normalises with each part's
        # statistics, so a tiny last batch would make the accuracy noisy.
        parts = np.array_split(np.arange(len(x)), max(1, len(x) // self.config.batch_size))
        correct, started = 0.0, time.perf_counter()
        for part in parts:
            correct += supernet.evaluate(spec, x[part], y[part]) * len(part)
        return correct / len(x), 1e3 * (time.perf_counter() - started) / len(parts)

    # --- the search ---------------------------------------------------------------------------

    def run(self, data: Dataset, search_dir: str | os.PathLike[str], *, evaluator: Any,
            resume: bool = False, overwrite: bool = False, finalize: bool = True,
            verbose: bool = True, config_extra: Mapping[str, Any] | None = None,
            runner: Any = None, callbacks: Sequence[SearchCallback] | None = None) -> Any:
        """Searches, selects a cell and trains its final network; returns the final
        ``SearchResult`` (``.best`` is the chosen cell's final network).

        Args:
            data: the dataset (train / validation / test splits in memory).
            search_dir: where the checkpoints (``benas/``), the final trial and ``best/`` go.
            evaluator: trains the final network (a ``KerasEvaluator``).
            resume: continue from the last finished epoch in ``search_dir``.
            overwrite: start over, deleting an earlier search there.
            finalize: retrain the final network on train + validation into ``best/``.
            config_extra: settings recorded in ``summary.json`` (e.g. the flags).
            runner: where the final network trains (default in this process); the
                weight-sharing phase always runs here, on one shared model.
            verbose: with no ``callbacks``: print progress (False: log it).
            callbacks: the search's observers (default: a ``ProgressPrinter(verbose)``);
                they get the weight-sharing phase's lines as ``on_message``.
        """
        from keras_cnas.engine.search import SearchConfig, SearchDirError, run_search
        from keras_cnas.engine.search_dir import Manifest, SearchDirLock, check_path
        from keras_cnas.strategies.fixed import FixedSpecs

        observers = CallbackList([ProgressPrinter(verbose)] if callbacks is None else callbacks)

        if resume and overwrite:
            raise ValueError("resume and overwrite: pass at most one of them")
        if len(data.y_val) == 0:
            raise ValueError(f"data: {data.name!r} has no validation split; B-ENAS scores cells "
                             "on it: load the data with validation_split > 0")
        search_dir = check_path(search_dir)
        state_dir = search_dir / "benas"
        search_dir.mkdir(parents=True, exist_ok=True)
        # One lock over both phases (the engine's search re-enters it).
        with SearchDirLock(search_dir):
            manifest = Manifest(search_dir)
            if overwrite:
                manifest.remove_written()  # what an earlier search wrote, nothing else
            elif state_dir.joinpath("state.json").exists() and not resume:
                raise SearchDirError(
                    f"search_dir: {search_dir} already holds a B-ENAS search; pass resume=True "
                    "(--resume) to continue it, overwrite=True (--overwrite) to start over, or "
                    "another search_dir")
            elif resume and not state_dir.joinpath("state.json").exists():
                raise SearchDirError(
                    f"search_dir: {search_dir} holds no B-ENAS search to resume (no "
                    "benas/state.json); drop resume (--resume) to start one")
            if not state_dir.exists():
                manifest.claim_absent(["benas"])
            state_dir.mkdir(parents=True, exist_ok=True)
            selected = self._search(data, state_dir, observers.on_message)
            final = self.final_space.net(selected["cell"])
            observers.on_message(f"B-ENAS chose cell {final.cell.key()}: final network "
                                 f"{final.describe()}")
            # The final network's search may not have started before an interruption.
            started = (search_dir / "trials.db").exists()
            config = SearchConfig(search_dir=search_dir, seed=self.config.seed,
                                  resume=resume and started, finalize=finalize,
                                  config_extra={**(config_extra or {}),
                                                "benas": self.config.to_dict()})
            return run_search(self.final_space, self.constraints,
                              strategy=FixedSpecs([final], phase="final"), evaluator=evaluator,
                              runner=runner, config=config, callbacks=observers.callbacks)

    def _search(self, data: Dataset, state_dir: pathlib.Path,
                say: Callable[[str], None]) -> dict[str, Any]:
        from keras_cnas.strategies.controller import Controller
        from keras_cnas.strategies.reinforce import PolicyGradient
        from keras_cnas.training.supernet import SharedCellSupernet

        cfg = self.config
        n_train = len(data.y_train)
        steps = cfg.child_steps or math.ceil(n_train / cfg.batch_size)
        # A cell's step is compiled on its third use, which makes it several times faster:
        # fine for training, but a timed cost would then favour cells seen before, so when
        # eval_ms is penalised every cell runs eagerly.
        supernet = SharedCellSupernet(self.space, lr_max=cfg.lr_max, lr_min=cfg.lr_min,
                                      decay_steps=max(1, steps * cfg.epochs),
                                      weight_decay=cfg.weight_decay, seed=cfg.seed,
                                      trace_after=None if MEASURED in self.rule.bounds else 3)
        controller = Controller(self.space.decision_sizes(), lstm_size=cfg.lstm_size,
                                temperature=cfg.temperature, tanh_constant=cfg.tanh_constant,
                                learning_rate=cfg.controller_learning_rate, seed=cfg.seed)
        policy = PolicyGradient(controller, entropy_weight=cfg.entropy_weight,
                                baseline_decay=cfg.baseline_decay)
        rng = np.random.default_rng(cfg.seed)
        state = self._load(state_dir, supernet, policy, rng)
        if state.get("selected") is not None:
            return state["selected"]
        history: list[dict[str, Any]] = state.get("history", [])
        for epoch in range(state.get("epoch", 0), cfg.epochs):
            started = time.perf_counter()
            # Algorithm 2: one sampled cell per mini-batch trains the shared weights.
            order = rng.permutation(n_train)
            losses = []
            for step in range(steps):
                decisions, _ = policy.sample(rng)
                spec = self.space.from_decisions(decisions)
                at = (step * cfg.batch_size) % max(1, n_train - cfg.batch_size + 1)
                batch = order[at:at + cfg.batch_size]
                losses.append(supernet.train_step(spec, data.x_train[batch], data.y_train[batch]))
            # Algorithm 3: s sampled cells, each scored on a validation mini-batch.
            rewards, accuracies = [], []
            for _ in range(cfg.controller_samples):
                decisions, entropy = policy.sample(rng)
                spec = self.space.from_decisions(decisions)
                batch = rng.choice(len(data.y_val), min(cfg.batch_size, len(data.y_val)),
                                   replace=False)
                accuracy, eval_ms = self._score(supernet, spec, data.x_val[batch], data.y_val[batch])
                reward = self.rule.reward(accuracy, self.costs(spec, eval_ms))
                policy.learn(decisions, reward, entropy)
                rewards.append(reward)
                accuracies.append(accuracy)
            record = {"epoch": epoch + 1, "child_loss": float(np.mean(losses)),
                      "controller_reward": float(np.mean(rewards)),
                      "controller_accuracy": float(np.mean(accuracies)),
                      "baseline": policy.baseline, "learning_rate": supernet.learning_rate,
                      "seconds": time.perf_counter() - started}
            history.append(record)
            say(f"B-ENAS epoch {epoch + 1}/{cfg.epochs}: child loss {record['child_loss']:.3f}, "
                f"controller accuracy {record['controller_accuracy']:.3f} reward "
                f"{record['controller_reward']:.3f}, {record['seconds']:.1f} s")
            self._save(state_dir, supernet, policy, rng, {"epoch": epoch + 1, "history": history})
        selected = self._select(supernet, policy, rng, data)
        self._save(state_dir, supernet, policy, rng,
                   {"epoch": cfg.epochs, "history": history, "selected": selected})
        return selected

    def _select(self, supernet: Any, policy: Any, rng: np.random.Generator,
                data: Dataset) -> dict[str, Any]:
        """Algorithm 4: the best feasible of ``select_samples`` sampled cells."""
        cfg = self.config
        feasible: list[dict[str, Any]] = []
        tries, cheapest = 0, {}
        # Keep sampling (bounded) until select_samples feasible cells are in hand.
        while len(feasible) < cfg.select_samples and tries < 20 * cfg.select_samples:
            tries += 1
            decisions, _ = policy.sample(rng)
            spec = self.space.from_decisions(decisions)
            costs = self.costs(spec)
            for name in self.constraints.bounds:
                if name in costs:
                    cheapest[name] = min(cheapest.get(name, math.inf), costs[name])
            if not self.constraints.satisfied(costs):
                continue
            accuracy, eval_ms = self._score(supernet, spec, data.x_val, data.y_val)
            feasible.append({"cell": spec.cell.to_list(), "key": spec.cell.key(),
                             "accuracy": accuracy, "costs": {**costs, MEASURED: eval_ms}})
        if not feasible:
            seen = ", ".join(f"{k} {v:,.0f} vs max {self.constraints.bounds[k]:,.0f}"
                             for k, v in cheapest.items())
            raise InfeasibleConstraintsError(
                f"SelectCell: none of {tries} sampled cells' final networks "
                f"({cfg.final_layers} layers) met {self.constraints}; cheapest seen: {seen}. "
                "Fix: raise the bounds, lower final_layers / final_filters, or raise alpha so "
                "the controller learns the budget")
        for entry in feasible:
            entry["selection_score"] = self._selection_score(entry)
        best = max(feasible, key=lambda e: e["selection_score"])
        return {**best, "candidates": feasible, "tries": tries}

    def _selection_score(self, entry: Mapping[str, Any]) -> float:
        if self.config.select_by == "accuracy":
            return float(entry["accuracy"])
        # accuracy x cost: each hard-bounded cost as a fraction of its bound (params when
        # nothing is bounded), so a cell that uses more of the budget ranks higher.
        bounded = [(name, b) for name, b in self.constraints.bounds.items() if name in entry["costs"]]
        score = float(entry["accuracy"])
        for name, bound in bounded or [("params", 1.0)]:
            score *= entry["costs"][name] / bound
        return score

    # --- checkpoints ----------------------------------------------------------------------------

    def _save(self, state_dir: pathlib.Path, supernet: Any, policy: Any,
              rng: np.random.Generator, state: Mapping[str, Any]) -> None:
        # The weights go to a file named by the epoch, and state.json, replaced atomically
        # last, names it: a kill between the two leaves the previous pair intact.
        weights = f"supernet_epoch{state['epoch']}.npz"
        supernet.save(state_dir / weights)
        payload = {"config": self.config.to_dict(), "space": self.space.get_config(),
                   "constraints": self.constraints.to_dict(), "rng": rng.bit_generator.state,
                   "policy": policy.state_dict(), "supernet": weights, **state}
        partial = state_dir / "state.json.partial"
        partial.write_text(json.dumps(payload))
        os.replace(partial, state_dir / "state.json")  # the state is whole or absent
        for old in state_dir.glob("supernet_epoch*.npz"):
            if old.name != weights:
                old.unlink()

    def _load(self, state_dir: pathlib.Path, supernet: Any, policy: Any,
              rng: np.random.Generator) -> dict[str, Any]:
        path = state_dir / "state.json"
        if not path.exists():
            return {}
        state = json.loads(path.read_text())
        mine = {"config": self.config.to_dict(), "space": self.space.get_config(),
                "constraints": self.constraints.to_dict()}
        mine = json.loads(json.dumps(mine))
        differ = [k for k in mine if state.get(k) != mine[k]]
        if differ:
            from keras_cnas.engine import SearchDirError

            raise SearchDirError(
                f"search_dir: {state_dir.parent} holds a B-ENAS search with other settings "
                f"({', '.join(differ)} differ); resume it with the same flags, or pass "
                "--overwrite to start over")
        supernet.load(state_dir / state["supernet"])
        policy.load_state_dict(state["policy"])
        rng.bit_generator.state = state["rng"]
        return state


def run_benas(space: EnasCellSpace, constraints: Constraints | None = None, *, strategy: BEnas,
              evaluator: Any, runner: Any = None, config: Any = None,
              callbacks: Sequence[SearchCallback] = ()) -> Any:
    """:class:`~keras_cnas.strategies.benas.BEnas`'s driver: the engine's ``run_search``
    hands it the search (same arguments); the weight-sharing phase trains on the
    evaluator's data, then the chosen cell's final network runs through the trial loop.

    Raises:
        ValueError: ``space`` is not an ``EnasCellSpace``, or the data has no validation
            split; ``max_trials`` is set (B-ENAS trains one final network).
    """
    from keras_cnas.engine.search import SearchConfig

    config = config or SearchConfig()
    strategy.check_space(space)
    if config.max_trials is not None:
        raise ValueError(f"max_trials: B-ENAS trains one final network, got max_trials="
                         f"{config.max_trials}; drop it (benas_epochs sets the search's length)")
    if config.search_dir is None:
        import tempfile

        search_dir: Any = tempfile.mkdtemp(prefix="keras_cnas_benas_")
    else:
        search_dir = config.search_dir
    driver = BEnasSearch(space, constraints, strategy.config)
    return driver.run(evaluator.dataset, search_dir, evaluator=evaluator, resume=config.resume,
                      overwrite=config.overwrite, finalize=config.finalize,
                      config_extra=config.config_extra, runner=runner, callbacks=callbacks)
