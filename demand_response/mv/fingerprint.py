"""What is published with a measured delivery, so anyone holding the data can recompute it.

A :class:`Fingerprint` names the method, its full parameters (defaults filled in), the
event window, the range of interval data read and the SHA-256 of that data in a canonical
text form, plus the figures. :func:`recompute` runs the method again on someone's own
readings and compares.

**Why SHA-256 (not keccak-256).** The hash is checked off chain, by households and
auditors, over a file they hold: SHA-256 is in every standard library and in coreutils
(``sha256sum`` over :func:`canonical_text` gives the same digest), and the EVM still has it
(precompile 0x02) should a contract ever need it. keccak-256 would tie a household's
check to Ethereum tooling for no gain.

**On chain.** The utility publishes :meth:`Fingerprint.evidence` (the record without the
meter id) with ``meterDelivery``; the ``DeliveryMetered`` event carries it, so a household
reads the method and parameters from the chain and recomputes with its own data
(:meth:`Fingerprint.from_evidence`, then :func:`recompute`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

from .baselines import BaselineResult, Series, compute
from .readings import MeterDataError

#: Version of the canonical forms below; bump if either changes.
FORMAT = 1


def canonical_text(meter_id: str, readings: Iterable[Sequence[int]]) -> str:
    """The interval data as hashed: ``meter_id,start,seconds,wh`` lines, oldest first, LF endings.

    It is exactly the CSV that :func:`demand_response.mv.io.write_csv` writes for one meter.
    """
    rows = sorted((int(s), int(n), int(w)) for s, n, w in readings)
    return "meter_id,start,seconds,wh\n" + "".join(f"{meter_id},{s},{n},{w}\n" for s, n, w in rows)


def data_hash(meter_id: str, readings: Iterable[Sequence[int]]) -> str:
    """``0x`` + SHA-256 of :func:`canonical_text` (64 hex digits)."""
    return "0x" + hashlib.sha256(canonical_text(meter_id, readings).encode("ascii")).hexdigest()


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


@dataclass(frozen=True)
class Fingerprint:
    """The published record of one measured delivery."""

    format: int
    meter_id: str
    method: str
    params: dict[str, Any]
    event_start: int
    event_end: int
    data_start: int
    data_end: int
    intervals: int  # readings hashed
    data_hash: str  # 0x + sha256 of the canonical text
    baseline_wh: int
    metered_wh: int
    delivered_watts: int

    @property
    def method_id(self) -> str:
        """``0x`` + SHA-256 of the canonical JSON of ``{format, method, params}`` (bytes32)."""
        body = {"format": self.format, "method": self.method, "params": self.params}
        return "0x" + hashlib.sha256(_canonical_json(body)).hexdigest()

    @property
    def record_digest(self) -> str:
        """One bytes32 over the whole record (canonical JSON of every field)."""
        return "0x" + hashlib.sha256(_canonical_json(asdict(self))).hexdigest()

    def onchain(self) -> dict[str, Any]:
        """The record's hashes and figure (for display beside the published evidence)."""
        return {"method_id": self.method_id, "data_hash": self.data_hash, "delivered_watts": self.delivered_watts,
                "record_digest": self.record_digest}

    def evidence(self) -> bytes:
        """What ``meterDelivery`` publishes on chain (``DeliveryMetered.evidence``): the record
        as canonical JSON **without the meter id**, which would tie a meter number to an
        address for everyone; the household knows its own. About 300-450 bytes."""
        body = asdict(self)
        del body["meter_id"]
        return _canonical_json(body)

    @classmethod
    def from_evidence(cls, data: bytes, meter_id: str) -> "Fingerprint":
        """Read evidence published on chain, for the household's own meter ``meter_id``;
        one clear line if it is not a measurement record."""
        try:
            body = json.loads(bytes(data).decode("utf-8"))
            if not isinstance(body, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            raise MeterDataError(f"the published evidence is not a measurement record: {exc}") from None
        return cls.from_json(json.dumps(dict(body, meter_id=meter_id)))

    def to_json(self) -> str:
        """The record as canonical JSON text."""
        return _canonical_json(asdict(self)).decode("ascii")

    @classmethod
    def from_json(cls, text: str) -> "Fingerprint":
        """Read a published record; one clear line if it is not one."""
        try:
            data = json.loads(text)
            fp = cls(**data)
        except (ValueError, TypeError) as exc:
            raise MeterDataError(f"not a published measurement record: {exc}") from None
        if fp.format != FORMAT:
            raise MeterDataError(f"measurement record format {fp.format} is not {FORMAT}; update this software")
        return fp


def fingerprint(meter_id: str, result: BaselineResult, readings: "Series | Iterable[Sequence[int]]") -> Fingerprint:
    """The record of ``result``, hashing the readings it read (``[data_start, data_end)``)."""
    series = Series.of(readings)
    used = [(t, series.interval_s, w) for t, w in series.wh.items() if result.data_start <= t < result.data_end]
    return Fingerprint(FORMAT, meter_id, result.method, result.params, result.event_start, result.event_end,
                       result.data_start, result.data_end, len(used), data_hash(meter_id, used),
                       result.baseline_total_wh, result.metered_total_wh, result.delivered_watts)


@dataclass(frozen=True)
class Comparison:
    """Published figure against the one recomputed from someone's own data."""

    agrees: bool
    published_watts: int
    recomputed_watts: int
    difference_watts: int  # recomputed - published
    same_data: bool  # the readings hash to the published data hash
    message: str


def recompute(record: Fingerprint, readings: "Series | Iterable[Sequence[int]]", *, tolerance_watts: int = 0,
              tolerance_pct: int = 0) -> Comparison:
    """Run the published method on ``readings`` and compare with the published figure.

    Agreement: ``|recomputed - published| <= max(tolerance_watts, published * tolerance_pct / 100)``.
    ``same_data`` tells whether the readings in the published range hash to the published
    hash (if not, the two parties hold different meter data, which explains a difference).
    """
    series = Series.of(readings)
    result = compute(record.method, series, record.event_start, record.event_end, **record.params)
    mine = fingerprint(record.meter_id, result, series)
    diff = result.delivered_watts - record.delivered_watts
    allowed = max(tolerance_watts, record.delivered_watts * tolerance_pct // 100)
    agrees = abs(diff) <= allowed
    same = mine.data_hash == record.data_hash and mine.data_start == record.data_start
    msg = (f"{record.method}: published {record.delivered_watts} W, recomputed {result.delivered_watts} W "
           f"({'+' if diff >= 0 else ''}{diff} W, tolerance {allowed} W): "
           + ("agrees" if agrees else "DISAGREES")
           + ("" if same else "; the meter data differs from the data the figure was computed on"))
    return Comparison(agrees, record.delivered_watts, result.delivered_watts, diff, same, msg)
