"""Named deployment targets: their memory, the budget a model gets, and how to export for them.

A :class:`Device` holds a board's SRAM and flash as its vendor states them (each figure with
its source), a reserve of each for everything that is not the model, and the export the
target runs (full-integer int8, int8 or float32 I/O). Its budget is

* ``max_arena_bytes = sram_bytes - sram_reserve_bytes``: the TensorFlow Lite Micro tensor
  arena must fit in the SRAM the application, its stack and heap, and the interpreter's own
  objects leave free;
* ``max_tflite_bytes = flash_bytes - flash_reserve_bytes``: the flatbuffer is linked into the
  firmware image next to the runtime, its kernels and the application.

The reserves are keras_cnas's defaults, not vendor figures: 64 KiB of SRAM and 256 KiB of
flash on a bare-metal Cortex-M board, more where the vendor's SDK keeps radios and an RTOS
resident (nRF52840 with a BLE stack, ESP32-S3 with ESP-IDF). Each device says why in
``reserve_note``; pass explicit ``--max_arena_bytes`` / ``--max_tflite_bytes`` (or
:meth:`Device.with_reserve`) when your firmware's map file says otherwise.

Latency on a microcontroller cannot be measured here, and keras_cnas does not estimate it:
the MCU presets bound memory only. The ``phone`` class has no memory bound; its latency is
*measured* with LiteRT (XNNPACK, one thread) on the machine running the search, a stand-in
for a phone's CPU that is labelled so wherever it is reported.

Pure Python; importing it never imports TensorFlow.

In Python, a device's budget and measurement go to the search and the evaluator::

    board = get_device("nrf52840")
    cnas.search(space, board.constraints(), data=data,
                evaluator=cnas.training.KerasEvaluator(
                    data, measurement=cnas.training.Measurement.for_device(board)))

Example:
    >>> from keras_cnas.devices import get_device
    >>> board = get_device("nano33ble")
    >>> board.name, board.max_arena_bytes, board.max_tflite_bytes, board.quantize, board.int8_io
    ('nrf52840', 196608, 786432, 'int8', True)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from keras_cnas._checks import is_int
from keras_cnas.costs.constraints import Constraints

__all__ = ["DEVICES", "Device", "Source", "device_names", "device_page", "device_table",
           "get_device"]

KiB = 1024
MiB = 1024 * KiB


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a figure comes from: the vendor's document, what it says, and how keras_cnas
    reads it (``note``, ours)."""

    figure: str
    document: str
    url: str
    says: str
    note: str = ""

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Device:
    """A deployment target and the budget a model gets on it.

    Attributes:
        name: the preset's name (``--device=NAME``).
        title: the chip and board.
        core: CPU core and clock.
        sram_bytes / flash_bytes: as the vendor states them (None: not a bound, e.g. a phone).
        sram_reserve_bytes / flash_reserve_bytes: kept for the application, its stack and
            heap, the RTOS / radio stack and the runtime's code (keras_cnas defaults).
        reserve_note: why the reserves are what they are.
        runtime: ``"tflite-micro"`` or ``"litert"`` (phones).
        quantize: the export quantization the target runs (``keras_cnas.export``).
        int8_io: int8 input and output tensors (what a firmware feeds from a sensor).
        latency: how latency is obtained for this target, or None (not measured or estimated).
        sources: one :class:`Source` per figure.
        aliases: other names accepted by :func:`get_device`.
    """

    name: str
    title: str
    core: str
    sram_bytes: int | None
    flash_bytes: int | None
    sram_reserve_bytes: int
    flash_reserve_bytes: int
    reserve_note: str
    runtime: str = "tflite-micro"
    quantize: str = "int8"
    int8_io: bool = True
    latency: str | None = None
    sources: tuple[Source, ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def max_arena_bytes(self) -> int | None:
        """The TFLite Micro arena bound: SRAM less the reserve (None without an SRAM bound)."""
        return None if self.sram_bytes is None else self.sram_bytes - self.sram_reserve_bytes

    @property
    def max_tflite_bytes(self) -> int | None:
        """The ``.tflite`` size bound: flash less the reserve (None without a flash bound)."""
        return None if self.flash_bytes is None else self.flash_bytes - self.flash_reserve_bytes

    @property
    def measured_costs(self) -> tuple[str, ...]:
        """The costs each trained candidate's artifact is measured on for this target."""
        if self.runtime == "litert":
            return ("tflite_bytes", "latency_ms")
        return ("tflite_bytes", "arena_bytes")

    def constraints(self) -> Constraints:
        """The hard bounds of this target (``max_arena_bytes``, ``max_tflite_bytes``)."""
        return Constraints(max_arena_bytes=self.max_arena_bytes,
                           max_tflite_bytes=self.max_tflite_bytes)

    def with_reserve(self, *, sram_bytes: int | None = None,
                     flash_bytes: int | None = None) -> "Device":
        """The same target with other reserves (e.g. from your firmware's map file).

        Example:
            >>> get_device("stm32f746").with_reserve(sram_bytes=128 * 1024).max_arena_bytes
            196608
        """
        changes: dict[str, Any] = {}
        for field, value, total in (("sram_reserve_bytes", sram_bytes, self.sram_bytes),
                                    ("flash_reserve_bytes", flash_bytes, self.flash_bytes)):
            if value is None:
                continue
            if not is_int(value) or value < 0 \
                    or (total is not None and value >= total):
                raise ValueError(f"{field[:-6]}: expected a whole number of bytes from 0 to "
                                 f"{total}, got {value!r}")
            changes[field] = value
        return dataclasses.replace(self, **changes, reserve_note=self.reserve_note
                                   + " (reserve changed by the caller)")

    def bound_sources(self) -> dict[str, str]:
        """For ``summary.json``: where each bound of :meth:`constraints` comes from."""
        out = {}
        if self.max_arena_bytes is not None:
            out["max_arena_bytes"] = (f"device {self.name}: SRAM {self.sram_bytes:,} B - reserve "
                                      f"{self.sram_reserve_bytes:,} B")
        if self.max_tflite_bytes is not None:
            out["max_tflite_bytes"] = (f"device {self.name}: flash {self.flash_bytes:,} B - "
                                       f"reserve {self.flash_reserve_bytes:,} B")
        return out

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["sources"] = [s.to_dict() for s in self.sources]
        out["aliases"] = list(self.aliases)
        out["max_arena_bytes"] = self.max_arena_bytes
        out["max_tflite_bytes"] = self.max_tflite_bytes
        return out

    def describe(self) -> str:
        """One line: the target and its budget."""
        parts = [f"{self.name}: {self.title} ({self.core})"]
        if self.max_arena_bytes is not None:
            parts.append(f"arena <= {self.max_arena_bytes / KiB:g} KiB of "
                         f"{self.sram_bytes / KiB:g} KiB SRAM")
        if self.max_tflite_bytes is not None:
            parts.append(f"model <= {self.max_tflite_bytes / KiB:g} KiB of "
                         f"{self.flash_bytes / KiB:g} KiB flash")
        parts.append(f"{self.quantize}{', int8 I/O' if self.int8_io else ''} on {self.runtime}")
        if self.latency:
            parts.append(f"latency: {self.latency}")
        return ", ".join(parts)


_BARE_METAL = ("64 KiB of SRAM for the application, its stack and heap and the interpreter "
               "object; 256 KiB of flash for the TFLite Micro runtime, the registered kernels "
               "and the application (keras_cnas defaults, not vendor figures)")

_ST_F746 = "https://www.st.com/resource/en/datasheet/stm32f746ng.pdf"
_ST_H7A3 = "https://www.st.com/resource/en/datasheet/stm32h7a3zi.pdf"
_ST_L4R5 = "https://www.st.com/resource/en/datasheet/stm32l4r5vi.pdf"
_NORDIC = "https://docs.nordicsemi.com/bundle/ps_nrf52840/page/keyfeatures_html5.html"
_ARDUINO = "https://docs.arduino.cc/hardware/nano-33-ble-sense/"
_RP2040 = "https://datasheets.raspberrypi.com/rp2040/rp2040-datasheet.pdf"
_PICO = "https://datasheets.raspberrypi.com/pico/pico-product-brief.pdf"
_ESP32S3 = "https://www.espressif.com/sites/default/files/documentation/esp32-s3_datasheet_en.pdf"
_DEVKITC = "https://docs.espressif.com/projects/esp-dev-kits/en/latest/esp32s3/esp32-s3-devkitc-1/"

#: Every preset, by name.
DEVICES: dict[str, Device] = {d.name: d for d in (
    Device(
        "stm32f746", "STMicroelectronics STM32F746NG (32F746GDISCOVERY, NUCLEO-F746ZG)",
        "Arm Cortex-M7, 216 MHz", 320 * KiB, 1 * MiB, 64 * KiB, 256 * KiB, _BARE_METAL,
        sources=(Source("sram_bytes", "DS10916 (STM32F745xx/STM32F746xx datasheet)", _ST_F746,
                        "320 Kbytes of SRAM (including 64 Kbytes of data TCM RAM)",
                        "the 16 KB instruction TCM and 4 KB backup SRAM are not counted"),
                 Source("flash_bytes", "DS10916", _ST_F746, "up to 1 Mbyte of Flash memory",
                        "the STM32F746NG has the full 1 Mbyte")),
        aliases=("f746", "stm32f7")),
    Device(
        "stm32h7a3", "STMicroelectronics STM32H7A3ZI (NUCLEO-H7A3ZI-Q)",
        "Arm Cortex-M7, 280 MHz", 1208 * KiB, 2 * MiB, 128 * KiB, 256 * KiB,
        "128 KiB of SRAM for the application, stack and heap (the arena must also sit in one "
        "contiguous SRAM region: check the linker map); 256 KiB of flash for the runtime, "
        "kernels and application (keras_cnas defaults, not vendor figures)",
        sources=(Source("sram_bytes", "DS13195 (STM32H7A3xI/G datasheet)", _ST_H7A3,
                        "around 1.4 Mbyte of RAM (including 192 Kbytes of TCM RAM, 1.18 Mbytes "
                        "of user SRAM and 4 Kbytes of backup SRAM)",
                        "the user SRAM is counted: 1.18 x 1024 KiB, rounded down to 1208 KiB"),
                 Source("flash_bytes", "DS13195", _ST_H7A3, "a dual-bank flash memory of up "
                        "to 2 Mbytes", "the STM32H7A3ZI (xI) has the full 2 Mbytes")),
        aliases=("h7a3",)),
    Device(
        "stm32l4r5", "STMicroelectronics STM32L4R5ZI (NUCLEO-L4R5ZI, the MLPerf Tiny reference "
        "board)", "Arm Cortex-M4F, 120 MHz", 640 * KiB, 2 * MiB, 64 * KiB, 256 * KiB, _BARE_METAL,
        sources=(Source("sram_bytes", "DS12023 (STM32L4R5xx/L4R7xx/L4R9xx datasheet)", _ST_L4R5,
                        "640 Kbytes of SRAM"),
                 Source("flash_bytes", "DS12023", _ST_L4R5, "2 Mbytes of Flash memory")),
        aliases=("l4r5",)),
    Device(
        "nrf52840", "Nordic nRF52840 (Arduino Nano 33 BLE Sense)", "Arm Cortex-M4F, 64 MHz",
        256 * KiB, 1 * MiB, 64 * KiB, 256 * KiB,
        "64 KiB of SRAM and 256 KiB of flash for the application, the BLE stack or Arduino "
        "Mbed OS core and the TFLite Micro runtime (keras_cnas defaults, not vendor figures; "
        "a BLE SoftDevice alone can take more: check its release notes)",
        sources=(Source("sram_bytes", "nRF52840 Product Specification, key features", _NORDIC,
                        "256 KB RAM"),
                 Source("flash_bytes", "nRF52840 Product Specification, key features", _NORDIC,
                        "1 MB flash"),
                 Source("board", "Arduino Nano 33 BLE Sense datasheet (ABX00031)", _ARDUINO,
                        "nRF52840: 64 MHz Arm Cortex-M4F, 1 MB Flash + 256 KB RAM")),
        aliases=("nano33ble", "arduino_nano_33_ble_sense", "nano33blesense")),
    Device(
        "rp2040", "Raspberry Pi RP2040 (Raspberry Pi Pico)", "2x Arm Cortex-M0+, 133 MHz",
        264 * KiB, 2 * MiB, 64 * KiB, 256 * KiB,
        _BARE_METAL + "; the flash is the Pico's external QSPI chip",
        sources=(Source("sram_bytes", "RP2040 datasheet", _RP2040,
                        "264kB on-chip SRAM in six independent banks"),
                 Source("flash_bytes", "Raspberry Pi Pico product brief", _PICO,
                        "2MB on-board QSPI Flash", "RP2040 has no internal flash")),
        aliases=("pico", "raspberry_pi_pico")),
    Device(
        "esp32s3", "Espressif ESP32-S3 (ESP32-S3-DevKitC-1-N8)", "2x Xtensa LX7, 240 MHz",
        512 * KiB, 8 * MiB, 192 * KiB, 1 * MiB,
        "192 KiB of SRAM for ESP-IDF (FreeRTOS, Wi-Fi / Bluetooth buffers, code placed in IRAM) "
        "and the application; 1 MiB of flash for the bootloader, partition table and app code "
        "(keras_cnas defaults, not vendor figures; the model must fit the app partition of "
        "your partition table)",
        sources=(Source("sram_bytes", "ESP32-S3 Series datasheet", _ESP32S3, "512 KB SRAM"),
                 Source("flash_bytes", "ESP32-S3-DevKitC-1 user guide", _DEVKITC,
                        "ESP32-S3-WROOM-1-N8: 8 MB flash",
                        "other module variants of the board have other flash sizes")),
        aliases=("esp32-s3",)),
    Device(
        "phone", "phone class (Android / iOS CPU with LiteRT)", "application processor",
        None, None, 0, 0, "no memory bound: a phone's RAM and storage are not the limit",
        runtime="litert", quantize="int8", int8_io=False,
        latency="measured with LiteRT (XNNPACK, 1 thread) on the machine running the search: "
                "a stand-in for a phone CPU, not a phone measurement"),
)}


def device_names() -> list[str]:
    """The preset names, sorted."""
    return sorted(DEVICES)


def get_device(name: str | Device) -> Device:
    """The preset ``name`` (case-insensitive; aliases such as ``nano33ble`` work).

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    if isinstance(name, Device):
        return name
    key = str(name).strip().lower().replace(" ", "_")
    for device in DEVICES.values():
        if key == device.name or key in device.aliases:
            return device
    known = ", ".join(f"{d.name} ({', '.join(d.aliases)})" if d.aliases else d.name
                      for d in DEVICES.values())
    raise ValueError(f"device: unknown device {name!r}; known: {known}")


def device_table(devices: Mapping[str, Device] | None = None) -> str:
    """The presets as a Markdown table (README / docs)."""
    rows = ["| device | target | SRAM | flash | arena bound | model bound | export |",
            "|---|---|---|---|---|---|---|"]
    for d in (devices or DEVICES).values():
        def k(v):
            return "-" if v is None else f"{v / KiB:g} KiB"
        rows.append(f"| `{d.name}` | {d.title}, {d.core} | {k(d.sram_bytes)} | "
                    f"{k(d.flash_bytes)} | {k(d.max_arena_bytes)} | {k(d.max_tflite_bytes)} | {d.quantize}"
                    f"{', int8 I/O' if d.int8_io else ''} ({d.runtime}) |")
    return "\n".join(rows)


def device_page() -> str:
    """``docs/devices.md``: the table, then each preset's sources and reserve (a test keeps
    the file equal to this)."""
    parts = ["# Device presets (`keras_cnas.devices`)", "",
             "Generated by `keras_cnas.devices.device_page()`; `tests/test_devices.py` keeps it "
             "equal to the code.", "", device_table(), ""]
    for d in DEVICES.values():
        parts += [f"## `{d.name}`: {d.title}", "", f"* core: {d.core}; runtime {d.runtime}, "
                  f"export {d.quantize}{', int8 I/O' if d.int8_io else ''}"]
        if d.aliases:
            parts.append(f"* also: {', '.join(f'`{a}`' for a in d.aliases)}")
        parts.append(f"* reserve: {d.reserve_note}")
        if d.latency:
            parts.append(f"* latency: {d.latency}")
        parts += [f"* {s.figure}: {s.document}, <{s.url}>: \"{s.says}\""
                  + (f" ({s.note})" if s.note else "") for s in d.sources]
        parts.append("")
    return "\n".join(parts)
