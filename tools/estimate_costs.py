"""Prints the analytic costs of a spec, and the params of the Keras model it builds.

Usage:
  python tools/estimate_costs.py --spec=runs/x/best/spec.json
  python tools/estimate_costs.py --reference=mobilenet_v2 --input_shape=224,224,3 \
      --num_classes=1000 --json
"""

from __future__ import annotations

import json
import pathlib
import sys

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout

from keras_cnas.cli import common as cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("spec", None, "Path of a spec JSON file (as written by keras_cnas).")
flags.DEFINE_enum("reference", None, sorted(cli.REFERENCES), "A reference network instead of --spec.")
flags.DEFINE_list("input_shape", ["224", "224", "3"], "Input height,width,channels for --reference.")
flags.DEFINE_integer("num_classes", 1000, "Classes for --reference.", lower_bound=1)
flags.DEFINE_float("alpha", 1.0, "Width multiplier for --reference=mobilenet_v2.", lower_bound=0.01)
flags.DEFINE_integer("bytes_per_element", 4, "B_pe of eq. 6: 4 for float32, 1 for int8.",
                     lower_bound=1)
flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.")
flags.DEFINE_bool("build", True, "Build the Keras model and report keras_params (needs TensorFlow).")

flags.register_multi_flags_validator(
    ["spec", "reference"], lambda f: (f["spec"] is None) != (f["reference"] is None),
    message="pass exactly one of --spec=PATH.json or --reference=NAME")
flags.register_validator(
    "input_shape", cli.valid_shape, message="--input_shape must be three positive integers, e.g. 224,224,3")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    spec = (cli.load_spec(FLAGS.spec) if FLAGS.spec is not None else
            cli.reference_spec(FLAGS.reference, FLAGS.input_shape, FLAGS.num_classes, FLAGS.alpha))
    print(cli.cost_summary(spec, FLAGS.bytes_per_element, build=FLAGS.build, as_json=FLAGS.json))


if __name__ == "__main__":
    cli.run(main)
