"""Plain entry points for a ``dr meter import|baseline`` command group (they print nothing).

The CLI calls these and prints what they return; :class:`~demand_response.mv.MeterDataError`
and :class:`~demand_response.mv.StoreError` carry the one line to show the user.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .baselines import METHODS, compute
from .fingerprint import Fingerprint, fingerprint, recompute
from .io import read_any
from .readings import MeterDataError
from .store import MeterStore

#: The method the demo and the daemons use unless told otherwise (docs/mv.md says why).
DEFAULT_METHOD = "caiso-10in10"


def import_command(db: "str | Path", path: "str | Path", meter_id: str | None = None) -> dict[str, Any]:
    """``dr meter import FILE --db DB [--meter ID]``: a CSV or Green Button file into the store.

    All meters of the file are stored in one transaction, or none.
    """
    data = read_any(path, meter_id)
    with MeterStore.open(db) as store:
        stored = store.import_batches(data)
        meters = {m: {"readings": len(rows), "span": store.span(m)} for m, rows in sorted(data.items())}
    return {"file": str(path), "db": str(db), "stored": stored, "meters": meters}


def baseline_command(db: "str | Path", meter_id: str, event_start: int, event_end: int,
                     method: str = DEFAULT_METHOD, holidays: Sequence[str] = (), utc_offset_s: int = 0,
                     params: dict[str, Any] | None = None) -> dict[str, Any]:
    """``dr meter baseline --db DB --meter ID --start T --end T [--method M]``.

    The meter's stored event and outage marks (other than this event) are excluded days.
    Returns the figures per interval and in total, the delivered watts and the publishable
    record (``record``, with ``onchain`` hashes).
    """
    if method not in METHODS:
        raise MeterDataError(f"unknown baseline method {method!r}; choose one of {', '.join(METHODS)}")
    with MeterStore.open(db) as store:
        span = store.span(meter_id)
        if span is None:
            raise MeterDataError(f"meter {meter_id} is not in {db}; import its data first (dr meter import)")
        readings = store.readings(meter_id)
        excluded = [(m.start, m.stop) for m in store.marks(meter_id)
                    if not (m.kind == "event" and m.start == event_start)]
    extra = dict(params or {})
    if method != "meter-before-after":
        extra.setdefault("holidays", list(holidays))
    result = compute(method, readings, int(event_start), int(event_end), utc_offset_s=utc_offset_s,
                     excluded=excluded, **extra)
    record = fingerprint(meter_id, result, readings)
    return {"meter_id": meter_id, **result.summary(), "record": record.to_json(), "onchain": record.onchain()}


def check_command(db: "str | Path", record_json: str, tolerance_watts: int = 0, tolerance_pct: int = 0) -> dict[str, Any]:
    """``dr meter check RECORD --db DB``: recompute a published record from one's own data."""
    record = Fingerprint.from_json(record_json)
    with MeterStore.open(db) as store:
        readings = store.readings(record.meter_id)
    if not readings:
        raise MeterDataError(f"meter {record.meter_id} is not in {db}; import your meter data first")
    cmp = recompute(record, readings, tolerance_watts=tolerance_watts, tolerance_pct=tolerance_pct)
    return {"agrees": cmp.agrees, "published_watts": cmp.published_watts, "recomputed_watts": cmp.recomputed_watts,
            "difference_watts": cmp.difference_watts, "same_data": cmp.same_data, "message": cmp.message}
