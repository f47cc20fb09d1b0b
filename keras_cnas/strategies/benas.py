"""B-ENAS with weight sharing as a strategy: its settings (:class:`BEnasConfig`) and the
registered ``"benas"`` entry, so that ``keras_cnas.search(space, strategy=BEnas(...))`` and
``tools/search.py --strategy=benas`` take the same path as every other strategy.

B-ENAS trains one set of shared weights before any trial runs, so the engine hands the
whole search to its driver (``driver``: :func:`keras_cnas.engine.benas.run_benas`), which
selects a cell and then runs the ordinary trial loop on the cell's final network. Pure
Python: the driver imports TensorFlow when it runs.

Example:
    >>> from keras_cnas.spaces import DescriptorSpace
    >>> BEnas(epochs=2).config.epochs
    2
    >>> BEnas().check_space(DescriptorSpace((8, 8, 1), 10))
    Traceback (most recent call last):
    ...
    ValueError: space: B-ENAS searches ENAS cells with shared weights; expected an EnasCellSpace, got DescriptorSpace (--space=enas_cell; or Reinforce for the controller without weight sharing)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from keras_cnas.costs import CostPenalty
from keras_cnas.strategies.base import STRATEGIES, Strategy
from keras_cnas.strategies.flags import CONTROLLER_FLAGS, StrategyFlag
from keras_cnas.trial import Candidate, Trial

__all__ = ["BEnas", "BEnasConfig", "SELECT_RULES"]

#: How SelectCell ranks the feasible samples.
SELECT_RULES = ("accuracy_x_cost", "accuracy")


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


def config_repr(name: str, config: BEnasConfig) -> str:
    """``name(...)`` with the settings of ``config`` that differ from the defaults."""
    changed = {k: v for k, v in config.to_dict().items()
               if v != getattr(BEnasConfig(), k) and k != "penalty_bounds"}
    if config.penalty_bounds:
        changed["penalty_bounds"] = dict(config.penalty_bounds)
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


@STRATEGIES.register("benas")
class BEnas(Strategy):
    """B-ENAS (Xu et al. 2019) with weight sharing over an ``EnasCellSpace``.

    Args:
        config: a :class:`BEnasConfig`; or its fields as keywords (``BEnas(epochs=2)``).

    The engine runs it through its driver; ``ask`` is never called (it raises).
    """

    name = "benas"
    driver = "keras_cnas.engine.benas:run_benas"
    flags = (
        *CONTROLLER_FLAGS,
        StrategyFlag("benas_epochs", 10, "Epochs of shared-weights + controller training.",
                     argument="epochs", low=1),
        StrategyFlag("child_steps", None, "Shared-weights steps per epoch (default: one pass over "
                     "the training split).", low=1),
        StrategyFlag("controller_samples", 20, "Cells scored per controller training.", low=1),
        StrategyFlag("select_samples", 10, "Feasible cells SelectCell compares (paper: 10).",
                     low=1),
        StrategyFlag("select_by", "accuracy_x_cost", "SelectCell's ranking (paper: accuracy x "
                     "cost).", kind="enum", choices=SELECT_RULES),
        StrategyFlag("final_layers", 11, "Cells of the final network (paper: 11).", low=1),
        StrategyFlag("final_filters", None, "Stem width of the final network (default: "
                     "--filters).", low=1),
    )

    def __init__(self, config: BEnasConfig | None = None, **fields: Any):
        super().__init__()
        if config is None:
            config = BEnasConfig(**fields)
        elif not isinstance(config, BEnasConfig) or fields:
            raise ValueError("config: pass a BEnasConfig or its fields as keywords, not both")
        self.config = config

    @classmethod
    def flag_arguments(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        args = super().flag_arguments(values)
        args["controller_learning_rate"] = args.pop("learning_rate")  # Reinforce's name
        # The trials' mini-batch and the search's seed, as the tool passes them.
        args.update({k: values[k] for k in ("batch_size", "seed") if values.get(k) is not None})
        return args

    def check_space(self, space: Any) -> None:
        from keras_cnas.spaces.enas_cell import EnasCellSpace

        if not isinstance(space, EnasCellSpace):
            raise ValueError(f"space: B-ENAS searches ENAS cells with shared weights; expected an "
                             f"EnasCellSpace, got {type(space).__name__} (--space=enas_cell; or "
                             "Reinforce for the controller without weight sharing)")

    def ask(self) -> Candidate | None:
        raise RuntimeError("BEnas runs through its driver (keras_cnas.search calls "
                           "keras_cnas.engine.benas.run_benas), not the ask/tell loop")

    def tell(self, trial: Trial) -> None:
        del trial

    def get_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    def _state(self) -> dict[str, Any]:
        return {}  # the driver checkpoints search_dir/benas/ itself

    def _load_state(self, state: Mapping[str, Any]) -> None:
        del state

    def __repr__(self) -> str:
        return config_repr("BEnas", self.config)
