"""The household's side of a metered settlement: when to report, and checking the utility's figure.

With interval meter data the utility meters every winner itself (``meterDelivery``) and
publishes how (the measurement record, ``DeliveryMetered.evidence``). The household then
needs to send nothing after its bid; ``REPORT_DELIVERY`` says whether it reports anyway:

* ``fallback`` (default): only if the utility has not metered it by the last quarter of
  the report window (a report after that is too late to count on);
* ``always``: report as soon as the event is over (the old flow);
* ``never``: never report (a winner the utility does not meter is paid nothing).

Once settled on a published record, the household recomputes its delivery from its own
meter store (``METER_DB``, meter ``METER_ID``, default its checksummed address) with the
published method and parameters, and flags a difference beyond ``DELIVERY_TOLERANCE_KW``
(default 0.05 kW) or ``DELIVERY_TOLERANCE_PCT`` (default 5 % of the published figure),
whichever is larger.

The recomputation uses the **published** calendar (time zone offset, holidays), as it must to
reproduce the figure. A household that sets its own ``BASELINE_TIMEZONE`` /
``BASELINE_HOLIDAYS`` also learns whether the utility used a different calendar: the record
then says so (``calendar_differs``) and gives the figure its own calendar yields
(``own_calendar_watts``), e.g. a holiday the utility counted as a business day.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from ..errors import UserError

REPORT_MODES = ("fallback", "always", "never")
DEFAULT_TOLERANCE_WATTS = 50
DEFAULT_TOLERANCE_PCT = 5


@dataclass(frozen=True)
class DeliveryOptions:
    """How a consumer agent takes part in metered settlement (see the module doc)."""

    report: str = "fallback"
    meter_db: "str | Path | None" = None
    meter_id: str | None = None
    tolerance_watts: int = DEFAULT_TOLERANCE_WATTS
    tolerance_pct: int = DEFAULT_TOLERANCE_PCT
    calendar: Any = None  # mv.calendar.Calendar: the household's own, to compare with the published one

    @classmethod
    def from_settings(cls, settings: Any) -> "DeliveryOptions":
        """From ``REPORT_DELIVERY``, ``METER_DB``, ``METER_ID`` and the tolerances; one line if bad."""
        report = (settings.get("REPORT_DELIVERY") or "fallback").strip().lower()
        if report not in REPORT_MODES:
            raise UserError(f"REPORT_DELIVERY={report!r} is not one of {', '.join(REPORT_MODES)}")
        kw = settings.get("DELIVERY_TOLERANCE_KW")
        pct = settings.get("DELIVERY_TOLERANCE_PCT")
        try:
            watts = DEFAULT_TOLERANCE_WATTS if kw in (None, "") else int(Decimal(str(kw)) * 1000)
            percent = DEFAULT_TOLERANCE_PCT if pct in (None, "") else int(str(pct))
        except (InvalidOperation, ValueError):
            raise UserError("DELIVERY_TOLERANCE_KW must be a number of kW and DELIVERY_TOLERANCE_PCT a whole "
                            f"percentage (got {kw!r}, {pct!r})") from None
        if watts < 0 or percent < 0:
            raise UserError("delivery tolerances cannot be negative")
        calendar = None
        if settings.get("BASELINE_TIMEZONE") or settings.get("BASELINE_HOLIDAYS"):
            from ..mv.calendar import Calendar

            calendar = Calendar.from_settings(settings.get("BASELINE_TIMEZONE"), settings.get("BASELINE_HOLIDAYS"))
        return cls(report, settings.get("METER_DB") or None, settings.get("METER_ID") or None, watts, percent,
                   calendar)

    def report_from(self, opens: int, report_deadline: int) -> int | None:
        """Chain time from which to report a delivery the utility has not metered (None: never)."""
        if self.report == "never":
            return None
        if self.report == "always":
            return opens
        return report_deadline - max(1, (report_deadline - opens) // 4)


def check_delivery(options: DeliveryOptions, address: str, metered: dict[str, Any] | None) -> dict[str, Any]:
    """The results-record fields of the household's check of the utility's figure.

    ``metered``: the ``DeliveryMetered`` of this winner (``DemandReduction.deliveries_metered``),
    or None when it was settled otherwise. Never raises for bad data: the reason goes in
    ``delivery_check``."""
    if metered is None:
        return {}
    out: dict[str, Any] = {"metered_watts": metered["metered_watts"], "metered_tx": metered["tx"]}
    evidence = metered["evidence"]
    if not evidence:
        return dict(out, delivery_check="the utility published no measurement record")
    from ..mv import MeterDataError, MeterStore
    from ..mv.fingerprint import Fingerprint, recompute
    from ..mv.store import StoreError

    meter_id = options.meter_id or address
    try:
        record = Fingerprint.from_evidence(evidence, meter_id)
        out.update(method=record.method, data_hash=record.data_hash)
        if options.meter_db is None:
            return dict(out, delivery_check="not checked: no meter store (set METER_DB)")
        with MeterStore.open(options.meter_db) as store:
            readings = store.readings(meter_id)
        if not readings:
            return dict(out, delivery_check=f"not checked: meter {meter_id} has no readings in the meter store")
        cmp = recompute(record, readings, tolerance_watts=options.tolerance_watts, tolerance_pct=options.tolerance_pct)
        out.update(recomputed_watts=cmp.recomputed_watts, difference_watts=cmp.difference_watts,
                   delivery_agrees=cmp.agrees, same_meter_data=cmp.same_data, delivery_check=cmp.message)
        if options.calendar is not None:
            out.update(_calendar_check(options.calendar, record, readings))
    except (MeterDataError, StoreError) as exc:
        return dict(out, delivery_check=out.get("delivery_check", "") + f"; not checked: {exc}"
                    if "delivery_check" in out else f"not checked: {exc}")
    return out


def _calendar_check(calendar: Any, record: Any, readings: Any) -> dict[str, Any]:
    """Whether the published calendar parameters are the household's own; if not, the figure
    its own calendar gives."""
    from ..mv.baselines import compute

    own = calendar.params(record.method, record.event_start)
    published = {k: record.params.get(k) for k in own}
    if published == own:
        return {"calendar_differs": False}
    result = compute(record.method, readings, record.event_start, record.event_end, **{**record.params, **own})
    return {"calendar_differs": True, "published_calendar": published, "own_calendar": own,
            "own_calendar_watts": result.delivered_watts}
