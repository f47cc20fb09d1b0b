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
``--export``.

Costs the penalty and the constraints see are those of the *final* network (what gets
deployed): every analytic cost, plus ``eval_ms``, the measured time of the shared-weights
forward pass that scored the cell (milliseconds per validation batch), known only once the
cell runs. When ``eval_ms`` is bounded, the supernet runs every cell eagerly, so that a
compiled (faster) repeat cannot bias the timing. A search is checkpointed after every epoch (``search_dir/benas/``) and resumes
from the last finished epoch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pathlib
import time
from typing import Any, Callable, Mapping

import numpy as np

from keras_cnas.costs import Constraints, CostPenalty, estimate
from keras_cnas.data import Dataset
from keras_cnas.errors import InfeasibleConstraintsError
from keras_cnas.spaces.enas_cell import EnasCellSpace, EnasNet

logger = logging.getLogger(__name__)

__all__ = ["BEnasConfig", "BEnasSearch", "SELECT_RULES"]

#: How SelectCell ranks the feasible samples.
SELECT_RULES = ("accuracy_x_cost", "accuracy")
#: The measured cost B-ENAS adds to the analytic ones.
MEASURED = "eval_ms"


@dataclasses.dataclass(frozen=True)
class BEnasConfig:
    """B-ENAS' settings (paper values where it gives them; CPU-sized otherwise).

    Attributes:
        epochs: Algorithm 1 iterations (TrainChild + TrainController).
        child_steps: shared-weights steps per epoch; None: one pass over the training split.
        batch_size: mini-batch of TrainChild and of each controller score.
        controller_samples: cells per TrainController (``s`` of Algorithm 3).
        alpha, beta: the reward's penalty weight and eq. 3's slope (paper: 0.1, 1).
        penalty_bounds: soft bounds on top of the hard constraints, e.g. ``{"eval_ms": 20}``.
        entropy_weight, baseline_decay: the REINFORCE reward's entropy bonus and baseline.
        lstm_size, controller_learning_rate, temperature, tanh_constant: the controller
            (paper: 2 LSTM layers, Adam 1e-3, temperature 5.0, tanh constant 2.5).
        lr_max, lr_min, weight_decay: the shared weights' cosine schedule and decay (paper:
            0.05 -> 0.001, 1e-4; Nesterov momentum 0.9).
        select_samples: cells sampled by SelectCell (paper: 10).
        select_by: ``"accuracy_x_cost"`` (paper) or ``"accuracy"``.
        final_layers: cells of the final network (paper: 11).
        final_filters: its stem width; None: the search's.
        seed: seeds the controller, the supernet and every sample.
    """

    epochs: int = 10
    child_steps: int | None = None
    batch_size: int = 64
    controller_samples: int = 20
    alpha: float = 0.1
    beta: float = 1.0
    penalty_bounds: Mapping[str, float] = dataclasses.field(default_factory=dict)
    entropy_weight: float = 0.1
    baseline_decay: float = 0.95
    lstm_size: int = 64
    controller_learning_rate: float = 1e-3
    temperature: float = 5.0
    tanh_constant: float = 2.5
    lr_max: float = 0.05
    lr_min: float = 0.001
    weight_decay: float = 1e-4
    select_samples: int = 10
    select_by: str = "accuracy_x_cost"
    final_layers: int = 11
    final_filters: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "controller_samples", "select_samples",
                     "final_layers", "lstm_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        for name in ("child_steps", "final_filters"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"{name}: expected a positive integer or None, got {value!r}")
        if self.select_by not in SELECT_RULES:
            raise ValueError(f"select_by: expected one of {', '.join(SELECT_RULES)}, got "
                             f"{self.select_by!r}")
        CostPenalty(dict(self.penalty_bounds), alpha=self.alpha, beta=self.beta)  # validates
        object.__setattr__(self, "penalty_bounds", {k: float(v) for k, v in
                                                    dict(self.penalty_bounds).items()})

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "penalty_bounds": dict(self.penalty_bounds)}


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
        changed = {k: v for k, v in self.config.to_dict().items()
                   if v != getattr(BEnasConfig(), k) and k != "penalty_bounds"}
        if self.config.penalty_bounds:
            changed["penalty_bounds"] = dict(self.config.penalty_bounds)
        return f"BEnasSearch({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

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
            verbose: bool = True, say: Callable[[str], None] = print,
            config_extra: Mapping[str, Any] | None = None, runner: Any = None) -> Any:
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
        """
        from keras_cnas.api import search
        from keras_cnas.engine import SearchDirError
        from keras_cnas.engine.search_dir import Manifest, SearchDirLock, check_path
        from keras_cnas.strategies.fixed import FixedSpecs

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
            selected = self._search(data, state_dir, say if verbose else (lambda _: None))
            final = self.final_space.net(selected["cell"])
            say(f"B-ENAS chose cell {final.cell.key()}: final network {final.describe()}")
            # The final network's search may not have started before an interruption.
            started = (search_dir / "trials.db").exists()
            return search(self.final_space, self.constraints,
                          strategy=FixedSpecs([final], phase="final"),
                          evaluator=evaluator, search_dir=search_dir, runner=runner,
                          seed=self.config.seed, resume=resume and started,
                          finalize=finalize, verbose=verbose,
                          config_extra={**(config_extra or {}), "benas": self.config.to_dict()})

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
