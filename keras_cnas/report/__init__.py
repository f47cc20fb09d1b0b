"""Reports of a search: PNG plots, a Markdown page and TensorBoard event files.

Everything reads ``search_dir`` (the SQLite trial store, read-only), so it works on a
search that is still running. Pure Python at import; matplotlib (``pip install
'keras_cnas[plot]'``) is imported only to draw.

Example:
    >>> import keras_cnas.report as report
    >>> files = report.write_report("runs/demo")          # doctest: +SKIP
    >>> logdir, written = report.write_tensorboard("runs/demo")  # doctest: +SKIP

From the shell: ``python tools/report.py --search_dir=runs/demo``.
"""

from keras_cnas.report.markdown import export_line, markdown_report, top_trials_table, write_report
from keras_cnas.report.plots import (
    cost_histogram_figure,
    pareto_costs,
    pareto_figure,
    progress_figure,
    save_plots,
)
from keras_cnas.report.record import SearchRecord, load_search
from keras_cnas.report.specs import SPEC_SUMMARIES, describe, spec_summary
from keras_cnas.report.tensorboard import TensorBoardLogger, TensorBoardWriter, trial_hparams, write_tensorboard

__all__ = [
    "SPEC_SUMMARIES", "SearchRecord", "TensorBoardLogger", "TensorBoardWriter", "cost_histogram_figure", "describe",
    "export_line", "load_search", "markdown_report", "pareto_costs", "pareto_figure",
    "progress_figure", "save_plots", "spec_summary", "top_trials_table", "trial_hparams",
    "write_report", "write_tensorboard",
]
