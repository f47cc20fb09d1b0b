"""Ask/tell search strategies: Gaussian-process Bayesian optimisation (the default),
random search, Monte Carlo coordinate descent, evolution, local search, Optuna's TPE, RCAS
lazy greedy, the B-ENAS REINFORCE controller and B-ENAS with weight sharing (``BEnas``,
whose driver in the engine trains the shared weights).

A strategy proposes candidates (``ask``) and learns from finished trials (``tell``); it
never trains anything. Strategies are registered by name in :data:`STRATEGIES`
(``--strategy=montecarlo``) and keep their whole state, RNG included, as JSON
(``state_dict``), so a killed search resumes exactly.

Pure Python + NumPy: importing this package never imports TensorFlow.

Example:
    >>> from keras_cnas import strategies
    >>> {"random", "montecarlo", "evolution"} <= set(strategies.STRATEGIES.names())
    True
    >>> strategies.STRATEGIES.get("montecarlo")(num_random=10).planned_trials
    80
"""

from keras_cnas.strategies.base import STRATEGIES, SearchContext, Strategy
from keras_cnas.strategies.bayesopt import BayesOpt
from keras_cnas.strategies.benas import BEnas, BEnasConfig
from keras_cnas.strategies.evolution import RegularizedEvolution
from keras_cnas.strategies.fixed import FixedSpecs
from keras_cnas.strategies.lazy_greedy import RCAS, LazyGreedy
from keras_cnas.strategies.local_search import LocalSearch
from keras_cnas.strategies.montecarlo import MonteCarlo
from keras_cnas.strategies.random_search import RandomSearch
from keras_cnas.strategies.reinforce import Reinforce
from keras_cnas.strategies.tpe import TPE

__all__ = ["RCAS", "STRATEGIES", "BEnas", "BEnasConfig", "BayesOpt", "FixedSpecs", "LazyGreedy", "LocalSearch", "MonteCarlo",
           "RandomSearch", "RegularizedEvolution", "Reinforce", "SearchContext", "Strategy", "TPE"]
