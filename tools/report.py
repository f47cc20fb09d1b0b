"""Plots, a Markdown report and TensorBoard event files of a search, finished or running.

Usage:
  python tools/report.py --search_dir=runs/demo                 # -> runs/demo/report/
  python tools/report.py --search_dir=runs/demo --out=/tmp/rep --top=20
  tensorboard --logdir runs/demo/tensorboard

Writes OUT/report.md (settings, status, the best and top trials in words with their costs
and measured TFLite figures, the Pareto fronts) and PNG plots: accuracy vs each cost with
the hard bounds drawn (pareto_<cost>.png), best score vs trials (progress.png, the RCAS
paper's Figure 4) and the costs of evaluated vs rejected samples (cost_histograms.png).
Also adds any finished trial missing from SEARCH_DIR/tensorboard (a search writes them as
it goes). Reads the trial store read-only, so it is safe while the search runs. Plots need
matplotlib (pip install 'keras_cnas[plot]'); --noplots writes the rest without it.
"""

from __future__ import annotations

import pathlib
import sys

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from keras_cnas import report  # noqa: E402
from keras_cnas.cli import common  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("search_dir", None, "The search to report on (its --search_dir).",
                    required=True)
flags.DEFINE_string("out", None, "Where to write the report (default: SEARCH_DIR/report).")
flags.DEFINE_integer("top", 10, "Rows of the top-trials table.", lower_bound=1)
flags.DEFINE_bool("plots", True, "Draw the PNG plots (needs matplotlib).")
flags.DEFINE_bool("tensorboard", True, "Add finished trials missing from SEARCH_DIR/tensorboard.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    search_dir = pathlib.Path(FLAGS.search_dir)
    if not (search_dir / "trials.db").is_file():
        raise app.UsageError(f"--search_dir: {search_dir} holds no trials.db; pass the "
                             "--search_dir a search wrote (e.g. runs/demo)")
    try:
        files = report.write_report(search_dir, FLAGS.out, top=FLAGS.top, plots=FLAGS.plots)
    except ImportError as e:  # matplotlib missing: the message says how to install it
        sys.exit(f"error: {e}")
    record = report.load_search(search_dir)
    state = f"in progress, {len(record.running)} running" if record.in_progress else "finished"
    print(f"{search_dir}: {len(record.trials)} trials ({state}), "
          f"{record.rejected_count} proposals rejected by the hard constraints")
    for name, path in files.items():
        print(f"  {name}: {path}")
    if FLAGS.tensorboard:
        logdir, written = report.write_tensorboard(search_dir)
        print(f"  tensorboard: {logdir} ({written} trial(s) added); view with "
              f"`tensorboard --logdir {logdir}`")


if __name__ == "__main__":
    common.run(main)
