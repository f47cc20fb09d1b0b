"""The `make demo` job: costs, budget check, training and saving of a reference descriptor.

On the bundled scikit-learn digits (no download): estimates the analytic costs of a small
reference descriptor, checks them against a hard budget, trains the Keras model it
describes, prints test accuracy and costs, and saves everything under --out_dir.

Usage: python tools/demo.py --out_dir=runs/demo [--epochs=30]
"""

from __future__ import annotations

import json
import pathlib
import sys

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import keras_cnas as cnas  # noqa: E402
from keras_cnas.spaces import ConvLayer, Descriptor, FcLayer  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", "runs/demo", "Where the model, spec, costs and metrics go.")
flags.DEFINE_integer("epochs", 30, "Training epochs.", lower_bound=1)
# digits has 1,294 training images: batches of 32 give enough Adam steps in a few seconds.
flags.DEFINE_integer("batch_size", 32, "Mini-batch size.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the data split, initialisation and augmentation.")
flags.DEFINE_float("max_memory_bytes", 200_000, "Hard bound on eq. 6 memory.", lower_bound=1)
flags.DEFINE_float("max_flops", 5e6, "Hard bound on eq. 7-9 FLOPs.", lower_bound=1)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    out = pathlib.Path(FLAGS.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = cnas.data.load("digits", seed=FLAGS.seed)
    print(data.summary())

    spec = Descriptor(data.input_shape, data.num_classes,
                      conv_layers=(ConvLayer(16, 3, 3, 2, 2, 2, 2), ConvLayer(32, 3, 3)),
                      fc_layers=(FcLayer(64),))
    costs = cnas.estimate(spec)
    budget = cnas.Constraints(max_memory_bytes=FLAGS.max_memory_bytes, max_flops=FLAGS.max_flops)
    print(f"\nreference descriptor: {spec.describe()}\n{costs.table()}")
    violations = budget.violations(costs)
    print(f"\nbudget {budget}: " + ("satisfied" if not violations else
                                    "BROKEN: " + "; ".join(map(str, violations))))
    if violations:
        raise app.UsageError("the reference descriptor breaks the budget; raise the bounds")

    model = cnas.build_model(spec)
    assert model.count_params() == costs.params  # the model is the network the costs describe
    metrics = cnas.training.fit_and_evaluate(model, data, epochs=FLAGS.epochs,
                                                  batch_size=FLAGS.batch_size, seed=FLAGS.seed)
    print(f"\ntrained {metrics['epochs']} epochs in {metrics['train_seconds']:.1f} s: "
          f"val accuracy {metrics['val_accuracy']:.4f}, test accuracy {metrics['test_accuracy']:.4f}")

    model.save(out / "model.keras")
    (out / "spec.json").write_text(spec.to_json(indent=2) + "\n")
    (out / "costs.json").write_text(json.dumps(costs.to_dict(), indent=2, sort_keys=True) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    (out / "flags.json").write_text(json.dumps(
        {name: FLAGS[name].value for name in ("out_dir", "epochs", "batch_size", "seed", "max_memory_bytes", "max_flops")},
        indent=2, sort_keys=True) + "\n")
    print(f"saved model.keras, spec.json, costs.json, metrics.json, flags.json in {out}/")


if __name__ == "__main__":
    app.run(main)
