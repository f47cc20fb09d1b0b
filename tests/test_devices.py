"""Device presets, byte sizes with units, and how --device / --max_* flags become bounds."""

import json
import pathlib
import subprocess
import sys

import pytest
from absl import app

import keras_cnas as cnas
from keras_cnas.cli import search as cli
from keras_cnas.costs.constraints import parse_bytes
from keras_cnas.devices import DEVICES, get_device

KIB = 1024

# The figures each vendor states (datasheet / product page), checked one by one: a preset
# whose SRAM or flash drifts from its source fails here.
VENDOR_FIGURES = {
    "stm32f746": (320 * KIB, 1024 * KIB),
    "stm32h7a3": (1208 * KIB, 2048 * KIB),
    "stm32l4r5": (640 * KIB, 2048 * KIB),
    "nrf52840": (256 * KIB, 1024 * KIB),
    "rp2040": (264 * KIB, 2048 * KIB),
    "esp32s3": (512 * KIB, 8192 * KIB),
}


@pytest.mark.parametrize("name", sorted(VENDOR_FIGURES))
def test_each_mcu_preset_has_its_vendor_figures_sources_and_a_reserve(name):
    device = get_device(name)
    assert (device.sram_bytes, device.flash_bytes) == VENDOR_FIGURES[name]
    figures = {s.figure for s in device.sources}
    assert {"sram_bytes", "flash_bytes"} <= figures
    assert all(s.url.startswith("https://") and s.says for s in device.sources)
    assert 0 < device.sram_reserve_bytes < device.sram_bytes and device.reserve_note
    assert device.max_arena_bytes == device.sram_bytes - device.sram_reserve_bytes
    assert device.max_tflite_bytes == device.flash_bytes - device.flash_reserve_bytes
    assert (device.quantize, device.int8_io, device.runtime) == ("int8", True, "tflite-micro")
    assert device.latency is None  # MCU latency is neither measured nor estimated
    assert cnas.Constraints.for_device(name) == cnas.Constraints(
        max_arena_bytes=device.max_arena_bytes, max_tflite_bytes=device.max_tflite_bytes)


def test_the_required_targets_are_there_and_aliases_resolve():
    assert {"stm32f746", "stm32h7a3", "stm32l4r5", "nrf52840", "rp2040", "esp32s3",
            "phone"} <= set(DEVICES)
    assert get_device("Nano33BLE") is DEVICES["nrf52840"] is get_device("arduino_nano_33_ble_sense")
    assert get_device("pico") is DEVICES["rp2040"]


def test_the_phone_class_has_no_memory_bound_and_measures_latency_on_this_host():
    phone = get_device("phone")
    assert phone.constraints() == cnas.Constraints() and phone.runtime == "litert"
    assert "latency_ms" in phone.measured_costs and "on the machine running the search" in phone.latency


def test_unknown_device_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown device 'stm32f4'; known: stm32f746 .*nrf52840"):
        get_device("stm32f4")
    with pytest.raises(ValueError, match="known: "):
        cnas.Constraints.for_device("arduino_uno")


def test_with_reserve_checks_its_bytes():
    assert get_device("rp2040").with_reserve(flash_bytes=0).max_tflite_bytes == 2048 * KIB
    with pytest.raises(ValueError, match="sram_reserve: expected a whole number of bytes"):
        get_device("rp2040").with_reserve(sram_bytes=264 * KIB)


@pytest.mark.parametrize("text, expected", [
    ("64KiB", 65536), ("0.25MiB", 262144), ("65536", 65536), ("200kB", 200_000), ("1MB", 10 ** 6),
    ("64 kib", 65536), (4096, 4096), ("1.5e3", 1500)])
def test_parse_bytes_reads_units(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text, message", [
    ("64KB/s", "cannot read '64KB/s' as a size"), ("64Kb", None), ("-1", "positive number"),
    ("0.1", "positive number"), ("lots", "KiB, MiB, GiB, kB, MB, GB")])
def test_parse_bytes_refuses_bad_sizes_naming_the_argument(text, message):
    if message is None:  # lower-case b is bytes here, as in the units table
        assert parse_bytes(text, name="--max_arena_bytes") == 64000
        return
    with pytest.raises(ValueError, match=f"--max_arena_bytes: .*{message}"):
        parse_bytes(text, name="--max_arena_bytes")


def test_device_bounds_are_overridden_by_explicit_flags_and_each_source_is_named():
    flags = {"device": "nrf52840", "max_tflite_bytes": "0.25MiB", "max_params": 5e4}
    budget, sources = cli.resolve_constraints(flags)
    assert budget.bounds == {"arena_bytes": 196608, "tflite_bytes": 262144, "params": 5e4}
    assert sources["max_arena_bytes"].startswith("device nrf52840: SRAM 262,144 B - reserve")
    assert sources["max_tflite_bytes"] == "flag --max_tflite_bytes=0.25MiB"
    assert sources["max_params"] == "flag --max_params=50000.0"
    assert cli.export_settings(flags) == ("int8", True)
    assert cli.export_settings({**flags, "int8_io": False}) == ("int8", False)
    assert cli.measurement_kwargs(flags) == {"measure": ["tflite_bytes", "arena_bytes"],
                                             "export_quantize": "int8", "export_int8_io": True}
    phone = cli.measurement_kwargs({"device": "phone"})
    assert phone["measure"] == ["tflite_bytes", "latency_ms"] and not phone["export_int8_io"]


@pytest.mark.parametrize("flags, message", [
    ({"device": "uno"}, "--device: unknown device 'uno'; known: stm32f746"),
    ({"max_arena_bytes": "64KB/s"}, "--max_arena_bytes: cannot read '64KB/s'"),
    ({"max_tflite_bytes": "-3"}, "--max_tflite_bytes: expected a positive number of bytes"),
])
def test_bad_device_or_size_flags_are_usage_errors(flags, message):
    with pytest.raises(app.UsageError, match=message):
        cli.resolve_constraints(flags)


def test_importing_the_presets_never_imports_tensorflow():
    code = ("import sys, keras_cnas.devices, keras_cnas.costs; "
            "print(json.dumps('tensorflow' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True,
                         text=True, check=True)
    assert json.loads(out.stdout) is False


def test_docs_devices_md_is_the_generated_page():
    from keras_cnas.devices import device_page

    page = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "devices.md").read_text()
    assert page == device_page(), "regenerate: python -c 'from keras_cnas.devices import " \
        "device_page; open(\"docs/devices.md\", \"w\").write(device_page())'"
