"""Where a published delivery record is stored, and how: the one home for it.

A **delivery record** is what the utility publishes for one winner of one metered request:
the :mod:`~demand_response.mv.fingerprint` record (method, full parameters, the hash of
the data read and the figures) plus the per-interval series for charts::

    {"chain_id": 31337, "contract": "0x…", "request_id": 3, "address": "0x…",
     "meter_id": "0xAbC…", "method": "caiso-10in10", "params": {...},
     "event_start": …, "event_end": …, "data_hash": "0x…", "method_id": "0x…",
     "record_digest": "0x…", "baseline_wh": 2200, "metered_wh": 1200, "delivered_watts": 500,
     "intervals": [[start_unix, seconds, baseline_wh, metered_wh], ...],
     "fingerprint": {...the Fingerprint's own JSON, which `dr meter check` takes...}}

The fingerprint's own ``intervals`` (a count of the readings hashed) stays inside
``fingerprint``; at the top level ``intervals`` is the chart series. Extra keys
(``portfolio``, ``reported_watts``, ``verdict``...) may be added by the caller.

Layout (``records_dir`` defaults to ``settings.records_dir``, ``STATE_DIR/delivery-records``)::

    RECORDS_DIR/CHAIN_ID/CONTRACT/REQUEST_ID/ADDRESS.json     (addresses lower case)

Every part of the path is checked (an integer, or an address), so hostile input cannot
leave the folder. Files are written atomically (:func:`demand_response.files.atomic_write_json`).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..files import atomic_write_json
from .baselines import BaselineResult
from .fingerprint import Fingerprint
from .readings import MeterDataError

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def _address(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise MeterDataError(f"bad {what} {value!r} for a delivery record: give a 0x address of 40 hex digits")
    return value.lower()


def _whole(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MeterDataError(f"bad {what} {value!r} for a delivery record: give a whole number >= 0")
    return value


def request_dir(records_dir: "Path | str", chain_id: int, contract: str, request_id: int) -> Path:
    """The folder of one request's records."""
    return (Path(records_dir) / str(_whole(chain_id, "chain id")) / _address(contract, "contract")
            / str(_whole(request_id, "request id")))


def record_path(records_dir: "Path | str", chain_id: int, contract: str, request_id: int, address: str) -> Path:
    """``RECORDS_DIR/CHAIN_ID/CONTRACT/REQUEST_ID/ADDRESS.json`` (addresses lower case)."""
    return request_dir(records_dir, chain_id, contract, request_id) / f"{_address(address, 'address')}.json"


def series_of(result: BaselineResult) -> list[list[int]]:
    """``[[start_unix, seconds, baseline_wh, metered_wh], ...]`` of a baseline result."""
    return [[s, result.interval_s, b, m] for s, b, m in zip(result.starts, result.baseline_wh, result.metered_wh)]


def build_record(fp: Fingerprint, series: Iterable[Sequence[int]], *, chain_id: int, contract: str,
                 request_id: int, address: str, **extra: Any) -> dict[str, Any]:
    """The record as stored: the fingerprint's fields, its hashes, the series and where it belongs."""
    record: dict[str, Any] = {
        "chain_id": int(chain_id), "contract": contract, "request_id": int(request_id), "address": address,
        "meter_id": fp.meter_id, "method": fp.method, "params": fp.params,
        "event_start": fp.event_start, "event_end": fp.event_end, "data_hash": fp.data_hash,
        "method_id": fp.method_id, "record_digest": fp.record_digest,
        "baseline_wh": fp.baseline_wh, "metered_wh": fp.metered_wh, "delivered_watts": fp.delivered_watts,
        "intervals": [[int(v) for v in row] for row in series],
        "fingerprint": json.loads(fp.to_json()),
    }
    record.update(extra)
    return record


def fingerprint_of(record: Mapping[str, Any]) -> Fingerprint:
    """The :class:`Fingerprint` inside a stored record (or a bare fingerprint record)."""
    inner = record.get("fingerprint", record)
    return Fingerprint.from_json(json.dumps(inner))


def file_digest(record: Mapping[str, Any]) -> str:
    """``0x`` + SHA-256 of the record's canonical JSON (what the log names next to the file)."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "0x" + hashlib.sha256(text.encode("ascii")).hexdigest()


def write_record(records_dir: "Path | str", chain_id: int, contract: str, request_id: int, address: str,
                 record: Mapping[str, Any]) -> Path:
    """Store ``record`` (a dict from :func:`build_record`) atomically; returns its path."""
    path = record_path(records_dir, chain_id, contract, request_id, address)
    atomic_write_json(path, dict(record), sort_keys=True)
    return path


def read_records(records_dir: "Path | str", chain_id: int, contract: str, request_id: int) -> list[dict[str, Any]]:
    """Every stored record of one request, sorted by address; unreadable files are skipped."""
    folder = request_dir(records_dir, chain_id, contract, request_id)
    if not folder.is_dir():
        return []
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("0x*.json")):
        if not _ADDRESS.match(path.stem):
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            out.append(record)
    return out
