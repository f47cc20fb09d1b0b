"""TensorBoard event files of a search, read back with TensorFlow's own reader.

The hparams plugin's content is a TensorBoard protocol buffer TensorFlow does not ship, so
the test decodes it with a minimal wire-format reader written here against the field
numbers of tensorboard/plugins/hparams/plugin_data.proto (independent of the writer's code).
"""

import math
import struct

import numpy as np
import pytest

import keras_cnas as cnas
from keras_cnas._keras import tf
from keras_cnas.report import events, write_tensorboard
from keras_cnas.report.tensorboard import trial_hparams
from keras_cnas.spaces import CategoricalSpace
from keras_cnas.strategies import MonteCarlo
from keras_cnas.training.tabular import TabularEvaluator
from keras_cnas.trial import TrialStatus

SIZES = [3, 3, 3]


def _problem():
    space = CategoricalSpace(SIZES)
    table = {space.from_decisions(list(d)).key(): {"acc": 0.5 + 0.1 * d[0] - 0.05 * d[1]}
             for d in np.ndindex(*SIZES) if d[2] != 2}  # d[2] == 2: missing, so FAILED
    return space, TabularEvaluator(table, metric="acc")


def _search(path, **kwargs):
    space, evaluator = _problem()
    return cnas.search(space, strategy=MonteCarlo(num_random=6, num_adaptive=4, num_full=2),
                       evaluator=evaluator, search_dir=path, verbose=False, **kwargs)


def _events(run_dir):
    out = []
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        out += list(tf.compat.v1.train.summary_iterator(str(path)))
    return out


def _fields(data: bytes) -> list[tuple[int, object]]:
    """(field number, value) pairs of one protobuf message: varints as int, 64-bit as
    double, length-delimited as bytes (enough for plugin_data.proto)."""
    out, i = [], 0
    while i < len(data):
        key, i = _varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 1:
            value, i = struct.unpack("<d", data[i:i + 8])[0], i + 8
        elif wire == 2:
            size, i = _varint(data, i)
            value, i = data[i:i + size], i + size
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        out.append((field, value))
    return out


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not byte & 0x80:
            return value, i


def _session_start(content: bytes) -> dict:
    """HParamsPluginData.session_start_info (3) -> {"hparams": {...}, "start_time_secs"}."""
    [(_, info)] = [f for f in _fields(content) if f[0] == 3]
    hparams, start = {}, None
    for field, value in _fields(info):
        if field == 1:  # map entry: key 1, google.protobuf.Value 2
            entry = dict(_fields(value))
            [(kind, raw)] = _fields(entry[2])
            hparams[entry[1].decode()] = {2: lambda v: v, 3: bytes.decode, 4: bool}[kind](raw)
        elif field == 5:
            start = value
    return {"hparams": hparams, "start_time_secs": start}


def _session_end_status(content: bytes) -> int:
    [(_, info)] = [f for f in _fields(content) if f[0] == 4]
    return dict(_fields(info)).get(1, 0)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    path = tmp_path_factory.mktemp("search")
    return path, _search(path)


def test_every_finished_trial_is_a_run_with_its_hparams_session_and_metrics(searched):
    path, result = searched
    logdir = path / "tensorboard"
    runs = sorted(p.name for p in logdir.iterdir() if p.is_dir())
    assert runs == ["search"] + [f"trial_{t.id:05d}" for t in result.trials]
    assert any(t.status == TrialStatus.FAILED for t in result.trials)
    for trial in result.trials:
        evs = _events(logdir / f"trial_{trial.id:05d}")
        assert evs[0].file_version == "brain.Event:2"
        values = {v.tag: v for e in evs for v in e.summary.value}
        start = values["_hparams_/session_start_info"]
        assert start.metadata.plugin_data.plugin_name == "hparams"
        session = _session_start(start.metadata.plugin_data.content)
        expected = {k: (float(v) if isinstance(v, int) else v)
                    for k, v in trial_hparams(trial).items()}
        assert session["hparams"] == expected
        assert session["start_time_secs"] == pytest.approx(trial.timings["started"])
        end = values["_hparams_/session_end_info"].metadata.plugin_data.content
        status = _session_end_status(end)
        assert status == (events.STATUS_SUCCESS if trial.ok else events.STATUS_FAILURE)
        scalars = {tag: v.simple_value for tag, v in values.items() if v.HasField("simple_value")}
        if trial.ok:
            assert scalars["metrics/acc"] == pytest.approx(trial.metrics["acc"], rel=1e-6)
            assert scalars["score"] == pytest.approx(trial.score, rel=1e-6)
        else:
            assert "score" not in scalars and "metrics/acc" not in scalars


def test_the_search_run_has_one_progress_point_per_trial_and_the_best_so_far(searched):
    path, result = searched
    points = [e for e in _events(path / "tensorboard" / "search") if e.summary.value]
    assert [e.step for e in points] == list(range(1, len(result.trials) + 1))
    by_step = [{v.tag: v.simple_value for v in e.summary.value} for e in points]
    finished = sorted(result.trials, key=lambda t: t.timings["finished"])
    assert [int(s["trial/id"]) for s in by_step] == [t.id for t in finished]
    best, seen = [], -math.inf
    for trial, scalars in zip(finished, by_step):
        if trial.ok and trial.fidelity == "traction":
            seen = max(seen, trial.metrics["acc"])
        if seen > -math.inf:
            best.append((scalars["best/traction/acc"], seen))
    assert best and all(got == pytest.approx(want, rel=1e-6) for got, want in best)
    assert by_step[-1]["count/failed"] == sum(t.status == TrialStatus.FAILED for t in result.trials)


def test_a_resumed_search_catches_up_on_trials_written_without_tensorboard(tmp_path):
    _search(tmp_path, max_trials=5, tensorboard=False)
    assert not (tmp_path / "tensorboard").exists()
    result = _search(tmp_path, max_trials=9, resume=True)
    logdir = tmp_path / "tensorboard"
    for trial in result.trials:  # every trial exactly once
        assert len(list((logdir / f"trial_{trial.id:05d}").glob("events.out.tfevents.*"))) == 1
    assert write_tensorboard(tmp_path) == (logdir, 0)  # nothing left to add


def test_tensorflow_rejects_a_corrupted_record_so_the_checksums_are_checked(searched, tmp_path):
    path, _ = searched
    original = next((path / "tensorboard" / "trial_00000").glob("events.out.tfevents.*"))
    damaged = tmp_path / original.name
    data = bytearray(original.read_bytes())
    data[-8] ^= 0xFF  # a byte inside the last record's payload
    damaged.write_bytes(bytes(data))
    with pytest.raises(tf.errors.DataLossError):
        list(tf.compat.v1.train.summary_iterator(str(damaged)))
