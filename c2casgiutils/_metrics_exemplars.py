"""OpenMetrics exemplars with several workers: the newest exemplar of each series, per worker, beside the metrics files.

prometheus_client keeps no exemplar in multiprocess mode (its files hold a value and a timestamp per series). Here
each worker writes the newest exemplar of each of its series (``trace_id``, ``span_id``, the observed value and
the time) into a file of its own in the multiprocess directory, ``c2c-exemplars-<pid>.bin`` (not a ``.db`` file:
prometheus_client ignores it). The process that serves the metrics reads the files of the live workers and gives
each series the newest exemplar among them; files of dead workers are removed with their live gauges.

The file is a memory map of fixed slots: a header (magic, number of slots in use), then one slot per series. A
slot holds a CRC32, the exemplar (value, timestamp, trace id, span id) and the series key (JSON of the sample
name and labels), written once when the slot is taken. A worker rewrites the exemplar of a slot in place, without
a lock shared with the reader: the reader checks the CRC, which covers the key and the exemplar, and skips a slot
caught half-written (it is served at the next scrape). The number of slots is bounded (:data:`CAPACITY`): a
series beyond it gets no exemplar, and a key too long for a slot neither.
"""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

_LOGGER = logging.getLogger(__name__)

FILE_NAME = "c2c-exemplars-{pid}.bin"
FILE_PREFIX = "c2c-exemplars-"
MAGIC = b"C2CEXEM1"
_HEADER = struct.Struct("<8sI")  # magic, slots in use
HEADER_SIZE = _HEADER.size
_CRC = struct.Struct("<I")
_EXEMPLAR = struct.Struct("<dd16s8s")  # value, timestamp (seconds since the epoch), trace id, span id
_KEY_LENGTH = struct.Struct("<H")
SLOT_SIZE = 512
KEY_OFFSET = _CRC.size + _EXEMPLAR.size + _KEY_LENGTH.size
MAX_KEY = SLOT_SIZE - KEY_OFFSET
CAPACITY = 4096  # slots of one worker: 2 MiB of address space, pages written only as series appear
_READ_ATTEMPTS = 3  # a slot caught half-written is read again a few times, then left for the next scrape


class Exemplar(NamedTuple):
    """One exemplar: the trace of one observation of a series."""

    trace_id: str
    span_id: str
    value: float
    timestamp: float

    @property
    def labels(self) -> dict[str, str]:
        """The exemplar's label set (63 characters: within OpenMetrics' 128)."""
        return {"trace_id": self.trace_id, "span_id": self.span_id}


SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def series_key(name: str, labels: dict[str, str]) -> SeriesKey:
    """The identity of a sample: its name and sorted labels."""
    return name, tuple(sorted(labels.items()))


class ExemplarFile:
    """The exemplar file of this process (a new one: a file left by an earlier process with this pid is replaced)."""

    def __init__(self, directory: str, pid: int | None = None) -> None:
        self.path = os.path.join(directory, FILE_NAME.format(pid=os.getpid() if pid is None else pid))
        size = _HEADER.size + CAPACITY * SLOT_SIZE
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(descriptor, size)  # sparse: only the pages of used slots take room
            self._map = mmap.mmap(descriptor, size)
        finally:
            os.close(descriptor)
        self._map[: _HEADER.size] = _HEADER.pack(MAGIC, 0)
        self._used = 0
        self._key_crcs: list[int] = []
        self._full_warned = False

    def allocate(self, name: str, labels: dict[str, str]) -> int | None:
        """A slot for the series ``name{labels}``; None when the file is full or the key too long."""
        key = json.dumps([name, sorted(labels.items())], separators=(",", ":")).encode()
        if len(key) > MAX_KEY:
            return None
        if self._used >= CAPACITY:
            if not self._full_warned:
                self._full_warned = True
                _LOGGER.warning("%d series have exemplars: the others get none (%s)", CAPACITY, self.path)
            return None
        slot = self._used
        offset = _HEADER.size + slot * SLOT_SIZE
        self._map[offset + KEY_OFFSET - _KEY_LENGTH.size : offset + KEY_OFFSET] = _KEY_LENGTH.pack(len(key))
        self._map[offset + KEY_OFFSET : offset + KEY_OFFSET + len(key)] = key
        self._key_crcs.append(zlib.crc32(key))
        self._used += 1
        _HEADER.pack_into(self._map, 0, MAGIC, self._used)  # the reader sees the slot once its key is there
        return slot

    def write(self, slot: int, value: float, timestamp: float, trace_id: bytes, span_id: bytes) -> None:
        """The newest exemplar of the series of ``slot`` (ids as 16 and 8 raw bytes)."""
        exemplar = _EXEMPLAR.pack(value, timestamp, trace_id, span_id)
        offset = _HEADER.size + slot * SLOT_SIZE
        crc = zlib.crc32(exemplar, self._key_crcs[slot])  # over the key, then the exemplar: as the reader checks
        self._map[offset : offset + _CRC.size + _EXEMPLAR.size] = _CRC.pack(crc) + exemplar

    def close(self) -> None:
        self._map.close()


def read_file(path: str) -> dict[SeriesKey, Exemplar]:
    """The exemplars of one worker's file; a missing, foreign or truncated file has none."""
    try:
        with open(path, "rb") as file:
            header = file.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return {}
            magic, used = _HEADER.unpack(header)
            if magic != MAGIC:
                return {}
            used = min(used, CAPACITY)
            data = file.read(used * SLOT_SIZE)
            found: dict[SeriesKey, Exemplar] = {}
            for slot in range(len(data) // SLOT_SIZE):
                offset = slot * SLOT_SIZE
                parsed = _parse_slot(data[offset : offset + SLOT_SIZE])
                for _ in range(_READ_ATTEMPTS - 1):
                    if parsed is not False:
                        break
                    file.seek(_HEADER.size + offset)
                    parsed = _parse_slot(file.read(SLOT_SIZE))
                if isinstance(parsed, tuple):
                    found[parsed[0]] = parsed[1]
            return found
    except FileNotFoundError:  # the worker died and its file was removed meanwhile
        return {}


def _parse_slot(slot: bytes) -> tuple[SeriesKey, Exemplar] | bool | None:
    """(key, exemplar); None for a slot with no exemplar yet; False for one caught half-written."""
    if len(slot) < KEY_OFFSET:
        return False
    (crc,) = _CRC.unpack_from(slot)
    exemplar = slot[_CRC.size : _CRC.size + _EXEMPLAR.size]
    (key_length,) = _KEY_LENGTH.unpack_from(slot, KEY_OFFSET - _KEY_LENGTH.size)
    key = slot[KEY_OFFSET : KEY_OFFSET + key_length]
    value, timestamp, trace_id, span_id = _EXEMPLAR.unpack(exemplar)
    if timestamp == 0 and crc == 0:
        return None
    if key_length == 0 or key_length > MAX_KEY or zlib.crc32(exemplar, zlib.crc32(key)) != crc:
        return False
    try:
        name, labels = json.loads(key)
        series: SeriesKey = (str(name), tuple((str(k), str(v)) for k, v in labels))
    except (ValueError, TypeError):
        return False
    return series, Exemplar(trace_id.hex(), span_id.hex(), value, timestamp)


def newest(directory: str, pids: Iterable[int]) -> dict[SeriesKey, Exemplar]:
    """The newest exemplar of each series among the files of ``pids`` (the live workers)."""
    merged: dict[SeriesKey, Exemplar] = {}
    for pid in pids:
        for key, exemplar in read_file(os.path.join(directory, FILE_NAME.format(pid=pid))).items():
            known = merged.get(key)
            if known is None or exemplar.timestamp > known.timestamp:
                merged[key] = exemplar
    return merged


def attach(metrics: Iterable[Any], exemplars: dict[SeriesKey, Exemplar]) -> Iterator[Any]:
    """``metrics`` (prometheus_client families) with the exemplar of each counter and histogram-bucket sample."""
    if not exemplars:
        yield from metrics
        return
    from prometheus_client.samples import Exemplar as ClientExemplar  # noqa: PLC0415

    for metric in metrics:
        if metric.type in ("counter", "histogram"):
            samples = []
            for sample in metric.samples:
                found = exemplars.get(series_key(sample.name, sample.labels))
                if found is not None and (sample.name.endswith("_bucket") or sample.name.endswith("_total")):
                    samples.append(
                        sample._replace(exemplar=ClientExemplar(found.labels, found.value, found.timestamp))
                    )
                else:
                    samples.append(sample)
            metric.samples = samples
        yield metric


def remove_own_file(directory: str) -> None:
    """Remove this process's exemplar file (it stops serving requests)."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(directory, FILE_NAME.format(pid=os.getpid())))
