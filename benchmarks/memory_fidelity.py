"""How well do the analytic memory costs predict what a microcontroller needs?

For random descriptors (MIT-LL space, 28x28x1) and block-set genotypes (a compact 10-position
skeleton, 32x32x3), each built, converted to full-integer int8 (``to_tflite``, random
calibration inputs) and measured with the TFLite Micro interpreter, this compares

* the analytic ``memory_bytes`` (MIT-LL eq. 6, ``B * (params + max activation)`` with
  ``B = 1`` for int8) and ``peak_activation_bytes`` with the measured TFLite Micro arena
  (``micro_arena_bytes``, RAM) and the flatbuffer size (flash);
* the offline arena replay (``estimate_arena_bytes``) with the measured arena: it must be
  equal on every model;
* the deployment costs priced from the spec alone (``keras_cnas.costs.deployment_costs``,
  int8 export): ``arena_priced`` must equal the measured arena and ``tflite_priced`` the
  flatbuffer's length on every model (the ``tflite_priced vs tflite_bytes`` row is the
  spec-derived flash error; the summary line counts exact ones).

Weights are redrawn as training leaves them (``redraw_weights``: non-zero biases and
BatchNorm statistics; a zero bias, as at initialisation, is dropped by the converter).

Relative error is ``(predicted - measured) / measured``; the table shows the mean of its
absolute value, the signed worst case and Spearman's rank correlation (what a search that
only *ranks* architectures by a cost needs). Untrained networks whose int8 logits collapse
(TFLite Micro's int8 softmax aborts on them) are skipped and counted.

Prints a table and one JSON line with every figure.

Usage: python benchmarks/memory_fidelity.py [--models_per_space=30] [--seed=0]
"""

from __future__ import annotations

import json
import logging
import pathlib
import sys
import time

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import keras_cnas as cnas  # noqa: E402
from keras_cnas.builders.common import redraw_weights  # noqa: E402
from keras_cnas._keras import keras  # noqa: E402
from keras_cnas.costs import deployment_costs, estimate  # noqa: E402
from keras_cnas.export.convert import to_tflite  # noqa: E402
from keras_cnas.export.arena import estimate_arena_bytes  # noqa: E402
from keras_cnas.export.micro import MicroError, check_micro_compatible, micro_arena_bytes  # noqa: E402
from keras_cnas.spaces import BlockSetSpace, DescriptorSpace, Skeleton, Stage  # noqa: E402

flags.DEFINE_integer("models_per_space", 30, "Measured models per space.", lower_bound=2)
flags.DEFINE_integer("seed", 0, "Seeds sampling, weights and calibration inputs.")
flags.DEFINE_integer("calibration_samples", 16, "Random calibration inputs per model.",
                     lower_bound=1)
FLAGS = flags.FLAGS

#: A compact MobileNetV2-like skeleton: 10 positions, grouped and residual blocks.
COMPACT_SKELETON = Skeleton(stem_filters=16, stem_stride=2,
                            stages=(Stage(16, 1, 2), Stage(24, 2, 3), Stage(32, 2, 3), Stage(48, 1, 2)),
                            head_filters=64, activation="relu6")
SPACES = {
    "descriptor 28x28x1": DescriptorSpace((28, 28, 1), 10, max_conv_layers=5, max_filters=32,
                                          max_fc_layers=2, max_hidden=128),
    "blockset 32x32x3 N=10": BlockSetSpace((32, 32, 3), 10, skeleton=COMPACT_SKELETON),
}
#: (predictor, target) pairs of the table.
PAIRS = (("memory_bytes", "arena_bytes"), ("memory_bytes", "tflite_bytes"),
         ("peak_activation_bytes", "arena_bytes"), ("peak_activation_bytes", "tflite_bytes"),
         ("arena_estimate", "arena_bytes"), ("arena_priced", "arena_bytes"),
         ("tflite_priced", "tflite_bytes"))


def spearman(a, b) -> float:
    """Spearman's rank correlation (average ranks for ties), with NumPy only."""

    def ranks(x):
        x = np.asarray(x, dtype=float)
        order = np.argsort(x, kind="mergesort")
        r = np.empty(len(x))
        r[order] = np.arange(1, len(x) + 1)
        _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
        return (np.bincount(inverse, weights=r) / counts)[inverse]

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def measure_space(space, count: int, rng: np.random.Generator) -> tuple[list[dict], dict]:
    rows, skipped = [], {}
    attempts = 0
    while len(rows) < count and attempts < 3 * count:  # bounded: collapsed models are skipped
        attempts += 1
        spec = space.sample(rng)
        keras.backend.clear_session()
        model = redraw_weights(cnas.build_model(spec), rng)
        x = rng.random((FLAGS.calibration_samples,) + tuple(spec.input_shape), dtype=np.float32)
        flatbuffer = to_tflite(model, "int8", representative_data=x)
        try:
            check_micro_compatible(flatbuffer)
            arena = micro_arena_bytes(flatbuffer)
        except MicroError as e:
            reason = "collapsed int8 logits" if "SOFTMAX" in str(e) else str(e).splitlines()[0][:80]
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        report = estimate(spec, bytes_per_element=1)
        priced = deployment_costs(spec)  # from the spec alone, before anything is built
        rows.append({"spec": spec.describe(), "memory_bytes": report.memory_bytes,
                     "peak_activation_bytes": report.peak_activation_bytes,
                     "arena_bytes": arena, "tflite_bytes": len(flatbuffer),
                     "arena_estimate": estimate_arena_bytes(flatbuffer),
                     "arena_priced": priced["arena_bytes"], "tflite_priced": priced["tflite_bytes"]})
    return rows, skipped


def summarize(rows: list[dict]) -> dict:
    out = {}
    for predictor, target in PAIRS:
        p = np.array([r[predictor] for r in rows], dtype=float)
        t = np.array([r[target] for r in rows], dtype=float)
        rel = (p - t) / t
        worst = rel[np.argmax(np.abs(rel))]
        out[f"{predictor} vs {target}"] = {
            "mean_abs_rel_error": round(float(np.mean(np.abs(rel))), 4),
            "mean_rel_error": round(float(np.mean(rel)), 4),
            "worst_rel_error": round(float(worst), 4),
            "spearman": round(spearman(p, t), 4),
        }
    return out


def main(argv):
    del argv
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # the converter's INFO chatter
    rng = np.random.default_rng(FLAGS.seed)
    results, started = {}, time.perf_counter()
    print(f"{'space':24s} {'predictor vs measured':40s} {'mean |rel err|':>14s} "
          f"{'mean rel err':>12s} {'worst':>9s} {'spearman':>9s}")
    for name, space in SPACES.items():
        rows, skipped = measure_space(space, FLAGS.models_per_space, rng)
        summary = summarize(rows)
        exact = sum(r["arena_estimate"] == r["arena_bytes"] for r in rows)
        priced_exact = sum(r["arena_priced"] == r["arena_bytes"] for r in rows)
        flash_exact = sum(r["tflite_priced"] == r["tflite_bytes"] for r in rows)
        for pair, s in summary.items():
            print(f"{name:24s} {pair:40s} {s['mean_abs_rel_error']:14.1%} "
                  f"{s['mean_rel_error']:12.1%} {s['worst_rel_error']:9.1%} {s['spearman']:9.3f}")
        arena = [r["arena_bytes"] for r in rows]
        why = f" {skipped}" if skipped else ""
        print(f"{name:24s} models {len(rows)}, skipped {sum(skipped.values())}{why}; "
              f"arena {min(arena)}..{max(arena)} bytes; offline estimate == measured arena: "
              f"{exact}/{len(rows)}; priced from the spec == measured arena: "
              f"{priced_exact}/{len(rows)}; priced flash == file size: {flash_exact}/{len(rows)}")
        results[name] = {"models": len(rows), "skipped": skipped, "exact_arena_estimates": exact,
                         "exact_priced_arenas": priced_exact, "exact_priced_flash": flash_exact,
                         "arena_bytes_range": [min(arena), max(arena)], "pairs": summary,
                         "rows": rows}
    total = sum(r["models"] for r in results.values())
    exact = sum(r["exact_arena_estimates"] for r in results.values())
    print(f"offline arena estimate == TFLite Micro arena on {exact}/{total} models "
          f"({time.perf_counter() - started:.0f} s)")
    print(json.dumps({"flags": {"models_per_space": FLAGS.models_per_space, "seed": FLAGS.seed,
                                "calibration_samples": FLAGS.calibration_samples},
                      "exact_arena_estimates": exact, "models": total, "spaces": results}))


if __name__ == "__main__":
    app.run(main)
