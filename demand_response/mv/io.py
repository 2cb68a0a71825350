"""Import and export interval data: a plain CSV and Green Button (ESPI XML).

CSV: a header ``meter_id,start,seconds,wh`` then one line per interval (unix seconds,
interval length in seconds, integer Wh). Green Button: an Atom feed of ESPI resources
(UsagePoint, MeterReading, ReadingType, IntervalBlock of IntervalReadings), read with the
``greenbutton-objects`` parser (extra ``meter``) and written here with the standard library.

Readers return ``{meter_id: [Reading, ...]}`` after the per-reading checks; the store
checks gaps and duplicates against what it holds. Writers write atomically.
"""

from __future__ import annotations

import csv
import io as _io
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..artifacts import atomic_write_text
from .readings import MeterDataError, Reading, check_meter_id, check_reading

CSV_HEADER = ("meter_id", "start", "seconds", "wh")
MAX_FILE_BYTES = 512 * 1024 * 1024
_ATOM = "http://www.w3.org/2005/Atom"
_ESPI = "http://naesb.org/espi"
_UOM_WH = 72  # ESPI UomType: watt-hours
_KIND_ELECTRICITY = 0  # ESPI ServiceKind


def _open_checked(path: "str | Path") -> Path:
    p = Path(path)
    if not p.is_file():
        raise MeterDataError(f"{p}: no such file")
    if p.stat().st_size > MAX_FILE_BYTES:
        raise MeterDataError(f"{p}: larger than {MAX_FILE_BYTES // 2**20} MiB; split it by meter or by month")
    return p


# -- CSV ------------------------------------------------------------------------------------


def read_csv(path: "str | Path") -> dict[str, list[Reading]]:
    """Read a ``meter_id,start,seconds,wh`` CSV; errors name the line."""
    p = _open_checked(path)
    out: dict[str, list[Reading]] = {}
    with p.open(newline="", encoding="utf-8-sig") as fh:
        rows = csv.reader(fh)
        header = next(rows, None)
        if header is None or tuple(h.strip().lower() for h in header) != CSV_HEADER:
            raise MeterDataError(f"{p}: the first line must be the header {','.join(CSV_HEADER)} (got {header})")
        for line, row in enumerate(rows, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 4:
                raise MeterDataError(f"{p} line {line}: expected 4 fields meter_id,start,seconds,wh, got {len(row)}")
            meter, *nums = (c.strip() for c in row)
            values: list[object] = []
            for text in nums:
                try:
                    values.append(int(text))
                except ValueError:
                    try:
                        number = float(text)
                    except ValueError:
                        values.append(text)
                    else:  # "250.0" from a spreadsheet is 250 Wh; "0.25" is refused (kWh?)
                        values.append(int(number) if number.is_integer() else number)
            try:
                check_meter_id(meter)
                out.setdefault(meter, []).append(check_reading(meter, values))
            except MeterDataError as exc:
                raise MeterDataError(f"{p} line {line}: {exc}") from None
    if not out:
        raise MeterDataError(f"{p}: no readings after the header")
    return out


def csv_text(by_meter: Mapping[str, Iterable[Sequence[int]]]) -> str:
    """CSV text, meters sorted, readings oldest first (one meter's part is its canonical text)."""
    buf = _io.StringIO()
    buf.write(",".join(CSV_HEADER) + "\n")
    for meter in sorted(by_meter):
        for s, n, w in sorted((int(a), int(b), int(c)) for a, b, c in by_meter[meter]):
            buf.write(f"{meter},{s},{n},{w}\n")
    return buf.getvalue()


def write_csv(path: "str | Path", by_meter: Mapping[str, Iterable[Sequence[int]]]) -> None:
    """Write readings as CSV, atomically."""
    atomic_write_text(path, csv_text(by_meter))


# -- Green Button ---------------------------------------------------------------------------


def read_green_button(path: "str | Path", meter_id: str | None = None) -> dict[str, list[Reading]]:
    """Read an ESPI feed with ``greenbutton-objects``: one meter per UsagePoint.

    The meter id is the UsagePoint's title (or ``meter_id``, which needs a feed with one
    UsagePoint). Values are scaled by the ReadingType's ``powerOfTenMultiplier`` and must
    come out as whole Wh (``uom`` 72).
    """
    p = _open_checked(path)
    try:
        from greenbutton_objects import parse
    except ImportError:
        raise MeterDataError("reading Green Button needs greenbutton-objects: pip install 'demand-response[meter]'") from None
    try:
        points = parse.parse_feed(str(p))
    except ET.ParseError as exc:
        raise MeterDataError(f"{p}: not well-formed XML ({exc})") from None
    except (AssertionError, AttributeError, KeyError, ValueError, TypeError) as exc:
        raise MeterDataError(f"{p}: not a Green Button (ESPI) feed the parser understands ({type(exc).__name__}: {exc})") from None
    points = [up for up in points if any(True for _ in up.meterReadings)]
    if not points:
        raise MeterDataError(f"{p}: no UsagePoint with a MeterReading in this feed; is it a Green Button download?")
    if meter_id is not None and len(points) > 1:
        raise MeterDataError(f"{p}: {len(points)} usage points in the feed; leave out the meter id to import each "
                             "under its own title")
    out: dict[str, list[Reading]] = {}
    for up in points:
        name = meter_id or (up.title or "").strip()
        check_meter_id(name)
        rows = out.setdefault(name, [])
        for mr in up.meterReadings:
            rt = mr.readingType
            if rt is None or rt.uom is None or rt.uom.value != _UOM_WH:
                unit = getattr(getattr(rt, "uom", None), "name", "none")
                raise MeterDataError(f"{p}: meter {name} reads in {unit}, not watt-hours (ESPI uom 72); "
                                     "export energy, not power or cost")
            power = rt.powerOfTenMultiplier or 0
            for ir in mr.intervalReadings:
                raw = ir._value  # integer as written; the multiplier is applied exactly below
                if raw is None or ir.timePeriod is None:
                    raise MeterDataError(f"{p}: meter {name}: an IntervalReading lacks its value or timePeriod")
                if power >= 0:
                    wh: object = raw * 10**power
                else:
                    q, r = divmod(raw, 10**-power)
                    wh = q if r == 0 else raw / 10**-power
                start = int(ir.timePeriod.start.timestamp())
                seconds = int(ir.timePeriod.duration.total_seconds())
                rows.append(check_reading(name, (start, seconds, wh)))
    return out


def _sub(parent: ET.Element, tag: str, text: object | None = None, ns: str = _ESPI) -> ET.Element:
    el = ET.SubElement(parent, f"{{{ns}}}{tag}")
    if text is not None:
        el.text = str(text)
    return el


def _entry(feed: ET.Element, title: str, self_href: str, up_href: str, related: Sequence[str]) -> ET.Element:
    entry = ET.SubElement(feed, f"{{{_ATOM}}}entry")
    ET.SubElement(entry, f"{{{_ATOM}}}id").text = f"urn:uuid:{self_href.replace('/', '-')}"
    ET.SubElement(entry, f"{{{_ATOM}}}link", {"rel": "self", "href": self_href})
    ET.SubElement(entry, f"{{{_ATOM}}}link", {"rel": "up", "href": up_href})
    for href in related:
        ET.SubElement(entry, f"{{{_ATOM}}}link", {"rel": "related", "href": href})
    ET.SubElement(entry, f"{{{_ATOM}}}title").text = title
    return ET.SubElement(entry, f"{{{_ATOM}}}content")


def green_button_xml(by_meter: Mapping[str, Iterable[Sequence[int]]]) -> str:
    """An ESPI Atom feed: per meter a UsagePoint, a MeterReading, a Wh ReadingType and one
    IntervalBlock per local day (UTC) of readings."""
    ET.register_namespace("", _ATOM)
    ET.register_namespace("espi", _ESPI)
    feed = ET.Element(f"{{{_ATOM}}}feed")
    ET.SubElement(feed, f"{{{_ATOM}}}id").text = "urn:uuid:demand-response-meter-export"
    ET.SubElement(feed, f"{{{_ATOM}}}title").text = "Interval meter data"
    for n, meter in enumerate(sorted(by_meter), start=1):
        check_meter_id(meter)
        rows = sorted((int(a), int(b), int(c)) for a, b, c in by_meter[meter])
        if not rows:
            continue
        base = f"Subscription/1/UsagePoint/{n}"
        up = _entry(feed, meter, base, "Subscription/1/UsagePoint", [f"{base}/MeterReading"])
        upe = _sub(up, "UsagePoint")
        sc = _sub(upe, "ServiceCategory")
        _sub(sc, "kind", _KIND_ELECTRICITY)
        mr_href = f"{base}/MeterReading/1"
        rt_href = f"ReadingType/{n}"
        days = sorted({s // 86400 for s, _, _ in rows})
        ib_hrefs = [f"{mr_href}/IntervalBlock/{i}" for i in range(1, len(days) + 1)]
        mr = _entry(feed, f"{meter} energy", mr_href, f"{base}/MeterReading", [rt_href, f"{mr_href}/IntervalBlock"])
        _sub(mr, "MeterReading")
        rt = _sub(_entry(feed, "Energy delivered (Wh)", rt_href, "ReadingType", []), "ReadingType")
        for tag, val in (("accumulationBehaviour", 4), ("commodity", 1), ("dataQualifier", 12),
                         ("flowDirection", 1), ("intervalLength", rows[0][1]), ("kind", 12),
                         ("phase", 769), ("powerOfTenMultiplier", 0), ("timeAttribute", 0), ("uom", _UOM_WH)):
            _sub(rt, tag, val)
        by_day: dict[int, list[tuple[int, int, int]]] = {}
        for r in rows:
            by_day.setdefault(r[0] // 86400, []).append(r)
        for href, day in zip(ib_hrefs, days):
            block = _sub(_entry(feed, "", href, f"{mr_href}/IntervalBlock", []), "IntervalBlock")
            part = by_day[day]
            interval = _sub(block, "interval")
            _sub(interval, "duration", part[-1][0] + part[-1][1] - part[0][0])
            _sub(interval, "start", part[0][0])
            for s, secs, wh in part:
                ir = _sub(block, "IntervalReading")
                tp = _sub(ir, "timePeriod")
                _sub(tp, "duration", secs)
                _sub(tp, "start", s)
                _sub(ir, "value", wh)
    ET.indent(feed)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(feed, encoding="unicode") + "\n"


def write_green_button(path: "str | Path", by_meter: Mapping[str, Iterable[Sequence[int]]]) -> None:
    """Write readings as a Green Button (ESPI) feed, atomically."""
    atomic_write_text(path, green_button_xml(by_meter))


def read_any(path: "str | Path", meter_id: str | None = None) -> dict[str, list[Reading]]:
    """Read a CSV or a Green Button file, told apart by content (``<`` first means XML)."""
    p = _open_checked(path)
    with p.open("rb") as fh:
        head = fh.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<"):
        return read_green_button(p, meter_id)
    data = read_csv(p)
    if meter_id is not None:
        if len(data) != 1:
            raise MeterDataError(f"{p}: {len(data)} meters in the CSV; leave out the meter id to import each")
        return {check_meter_id(meter_id): next(iter(data.values()))}
    return data
