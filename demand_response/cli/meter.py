"""``dr meter import|baseline|check``: interval meter data, baselines and published records.

Thin shells over :mod:`demand_response.mv.commands` (docs/mv.md): they parse, call, and
print figures in kWh and kW with local times; ``--json`` prints the function's result for
machines instead. Bad data, an unknown meter or too little history is one line
(``MeterDataError``/``StoreError`` are ``DRError``s, printed by ``dr``'s one handler).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from ._common import UserError, decimal_arg, env_options, log_options, settings_from


def add_to(commands: argparse._SubParsersAction) -> None:
    """Add ``dr meter import``, ``baseline`` and ``check``."""
    p = commands.add_parser("meter", help="interval meter data: import, baselines, check a published figure",
                            description="Interval meter data (docs/mv.md): import CSV or Green Button files into a "
                                        "meter store, compute a delivery baseline, check a published record.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    q = actions.add_parser("import", help="store a CSV or Green Button file's readings (all meters or none)",
                           description="Read a CSV (meter_id,start,seconds,wh) or Green Button XML file and store "
                                       "its readings in one transaction: a bad reading stores nothing.")
    q.add_argument("file", metavar="FILE", help="the CSV or Green Button (ESPI XML) file")
    _db_option(q)
    q.add_argument("--meter", metavar="ID", help="meter id for a file that names none (a Green Button download)")
    _common(q)
    q.set_defaults(func=import_)

    q = actions.add_parser("baseline", help="a meter's baseline and delivered reduction over an event",
                           description="Compute the baseline of one meter over an event window and what it says "
                                       "was delivered; prints the figures per interval and the record to publish.")
    _db_option(q)
    q.add_argument("--meter", metavar="ID", required=True, help="the meter id (a consumer's checksummed address)")
    q.add_argument("--start", required=True, type=_when,
                   help="event start: local time YYYY-MM-DDTHH:MM (with --utc-offset, or this machine's zone), "
                        "an ISO time with its offset, or unix seconds")
    q.add_argument("--end", required=True, type=_when, help="event end, as --start")
    q.add_argument("--method", help="caiso-10in10 (default; BASELINE_METHOD), pjm-high4of5 or meter-before-after")
    q.add_argument("--holiday", action="append", default=[], metavar="YYYY-MM-DD",
                   help="a holiday (not a business day); repeatable")
    q.add_argument("--utc-offset", type=decimal_arg, metavar="HOURS",
                   help="the meter's local time zone as hours from UTC (e.g. -7), for days and local times "
                        "(default: --timezone, else this machine's offset at the event)")
    q.add_argument("--timezone", metavar="ZONE",
                   help="the meter's time zone: an IANA name (America/Los_Angeles) or an offset (+01:00) "
                        "(BASELINE_TIMEZONE)")
    q.add_argument("--holidays", metavar="DATES",
                   help="more holidays: YYYY-MM-DD,YYYY-MM-DD or @FILE (BASELINE_HOLIDAYS)")
    q.add_argument("--record", metavar="FILE", help="also write the publishable record (JSON) to FILE")
    _common(q)
    q.set_defaults(func=baseline)

    q = actions.add_parser("check", help="recompute a published delivery figure from your own meter data",
                           description="Rerun the published method and parameters on your own readings and compare "
                                       "with the published figure. Exit status 0 when it agrees, 3 when not.")
    q.add_argument("record", metavar="RECORD", help="the published record (JSON file: a delivery record "
                                                    "or a bare fingerprint)")
    _db_option(q)
    q.add_argument("--tolerance-kw", type=decimal_arg, default=Decimal(0),
                   help="a difference up to this much still agrees (default 0)")
    q.add_argument("--tolerance-pct", type=int, default=0, help="or up to this %% of the published figure (default 0)")
    _common(q)
    q.set_defaults(func=check)


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="DB", help="the meter store: a SQLite file (created if missing) or a "
                                                   "postgresql:// URL (default METER_DB)")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")
    env_options(parser)
    log_options(parser)


def _when(text: str) -> "int | _dt.datetime":
    """An argparse type: unix seconds, or an ISO date-time (naive: resolved later)."""
    if text.strip().isdigit():
        return int(text)
    try:
        return _dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time: give YYYY-MM-DDTHH:MM or unix seconds") from None


def _unix(value: "int | _dt.datetime", offset_s: int | None) -> int:
    if isinstance(value, int):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.timezone(_dt.timedelta(seconds=offset_s))) if offset_s is not None \
            else value.astimezone()
    return int(value.timestamp())


def _db(args: argparse.Namespace) -> str:
    db = args.db or settings_from(args).get("METER_DB")
    if not db:
        raise UserError("no meter store: pass --db FILE (or a postgresql:// URL), or set METER_DB")
    return str(db)


def _local(t: int, offset_s: int | None) -> str:
    zone = _dt.timezone(_dt.timedelta(seconds=offset_s)) if offset_s is not None else None
    return _dt.datetime.fromtimestamp(t, zone).strftime("%Y-%m-%d %H:%M")


def _emit(args: argparse.Namespace, result: dict[str, Any], text: str) -> None:
    print(json.dumps(result, indent=1, sort_keys=True) if args.json else text)


def import_(args: argparse.Namespace) -> int:
    """``dr meter import FILE --db DB``."""
    from ..mv.commands import import_command

    if not Path(args.file).is_file():
        raise UserError(f"no such file {args.file}; give a CSV or Green Button file")
    result = import_command(_db(args), args.file, args.meter)
    lines = [f"stored {result['stored']} reading(s) of {len(result['meters'])} meter(s) in {result['db']}"]
    for meter, info in result["meters"].items():
        span = info["span"]
        where = (f", every {span[0] // 60} min; stored intervals now start {_local(span[1], None)} .. "
                 f"{_local(span[2], None)}") if span else ""
        lines.append(f"  {meter}: {info['readings']} reading(s){where}")
    _emit(args, result, "\n".join(lines))
    return 0


def baseline(args: argparse.Namespace) -> int:
    """``dr meter baseline --db DB --meter ID --start T --end T``."""
    from ..mv.commands import DEFAULT_METHOD, baseline_command
    from ..mv.readings import MeterDataError

    from ._common import calendar_from

    db = _db(args)
    settings = settings_from(args)
    calendar = calendar_from(args, settings)
    offset_s = int(args.utc_offset * 3600) if args.utc_offset is not None else None
    if offset_s is None and (args.timezone or settings.get("BASELINE_TIMEZONE")):
        offset_s = calendar.utc_offset_s(_unix(args.start, 0))  # the zone's offset at the event
    start, end = _unix(args.start, offset_s), _unix(args.end, offset_s)
    if offset_s is None:
        found = _dt.datetime.fromtimestamp(start).astimezone().utcoffset()
        offset_s = int(found.total_seconds()) if found is not None else 0
    method = args.method or settings.get("BASELINE_METHOD") or DEFAULT_METHOD
    holidays = sorted({*args.holiday, *calendar.holidays})
    result = baseline_command(db, args.meter, start, end, method=method, holidays=holidays, utc_offset_s=offset_s)
    if args.record:
        from ..files import atomic_write_text

        try:
            atomic_write_text(args.record, result["record"] + "\n")
        except OSError as exc:
            raise MeterDataError(f"cannot write the record to {args.record}: {exc.strerror}") from None
    hours = (end - start) / 3600
    lines = [f"meter {args.meter}, {method}, event {_local(start, offset_s)} .. {_local(end, offset_s)} "
             f"(UTC{offset_s / 3600:+g})",
             f"{'interval':>16} {'baseline kWh':>13} {'metered kWh':>12} {'reduction kWh':>14}"]
    for row in result["intervals"]:
        lines.append(f"{_local(row['start'], offset_s):>16} {row['baseline_wh'] / 1000:>13.3f} "
                     f"{row['metered_wh'] / 1000:>12.3f} {(row['baseline_wh'] - row['metered_wh']) / 1000:>14.3f}")
    lines.append(f"{'total':>16} {result['baseline_wh'] / 1000:>13.3f} {result['metered_wh'] / 1000:>12.3f} "
                 f"{result['reduction_wh'] / 1000:>14.3f}")
    lines.append(f"delivered {result['delivered_watts'] / 1000:.3f} kW on average over {hours:g} h "
                 f"({result['adjustment']})")
    if result.get("days_used"):
        lines.append(f"days averaged: {', '.join(result['days_used'])}")
    lines.append(f"data hash {result['onchain']['data_hash']}")
    lines.append(f"record digest {result['onchain']['record_digest']}"
                 + (f" (record written to {args.record})" if args.record else " (--record FILE writes it)"))
    _emit(args, result, "\n".join(lines))
    return 0


def check(args: argparse.Namespace) -> int:
    """``dr meter check RECORD --db DB``: 0 when the figure agrees, 3 when not."""
    from ..mv.commands import check_command
    from ..mv.readings import MeterDataError

    try:
        text = Path(args.record).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read the record {args.record}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise MeterDataError(f"{args.record} is not a published measurement record (not text)") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise MeterDataError(f"{args.record} is not a published measurement record (not JSON)") from None
    if isinstance(data, dict) and isinstance(data.get("fingerprint"), dict):
        text = json.dumps(data["fingerprint"])  # a delivery record (mv.records) holds the fingerprint
    result = check_command(_db(args), text, tolerance_watts=int(args.tolerance_kw * 1000),
                           tolerance_pct=args.tolerance_pct)
    _emit(args, result, result["message"])
    return 0 if result["agrees"] else 3
