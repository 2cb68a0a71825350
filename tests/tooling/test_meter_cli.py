"""``dr meter import|baseline|check``: thin shells over mv.commands, in kWh and kW, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from demand_response import cli

DAY = 86400
T0 = 1752451200  # Monday 2025-07-14 00:00 UTC
EVENT = T0 + 17 * 3600  # 17:00 UTC


def _csv(path: Path, meter: str = "home-1", during: int = 125) -> Path:
    """A day of 15-minute data at 1 kW, with 0.5 kW (``during`` Wh) from 17:00 to 18:00."""
    lines = ["meter_id,start,seconds,wh"]
    for i in range(96):
        t = T0 + i * 900
        lines.append(f"{meter},{t},900,{during if EVENT <= t < EVENT + 3600 else 250}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _dr(args: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)
    for key in ("METER_DB", "BASELINE_METHOD", "DR_ENV_FILE", "BASELINE_TIMEZONE", "BASELINE_HOLIDAYS"):
        monkeypatch.delenv(key, raising=False)
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_import_then_baseline_prints_kwh_per_interval_and_the_delivered_kw(tmp_path, capsys, monkeypatch) -> None:
    db = str(tmp_path / "m.sqlite")
    code, out, _ = _dr(["meter", "import", str(_csv(tmp_path / "a.csv")), "--db", db], capsys, monkeypatch, tmp_path)
    assert code == 0 and "stored 96 reading(s) of 1 meter(s)" in out and "every 15 min" in out
    code, out, _ = _dr(["meter", "baseline", "--db", db, "--meter", "home-1", "--start", "2025-07-14T17:00",
                        "--end", "2025-07-14T18:00", "--utc-offset", "0", "--method", "meter-before-after",
                        "--record", str(tmp_path / "rec.json")], capsys, monkeypatch, tmp_path)
    assert code == 0
    assert ["2025-07-14", "17:00", "0.250", "0.125", "0.125"] in [line.split() for line in out.splitlines()]
    assert "delivered 0.500 kW on average over 1 h" in out
    assert "data hash 0x" in out and (tmp_path / "rec.json").is_file()


def test_json_output_is_the_functions_result_for_machines(tmp_path, capsys, monkeypatch) -> None:
    db = str(tmp_path / "m.sqlite")
    _dr(["meter", "import", str(_csv(tmp_path / "a.csv")), "--db", db], capsys, monkeypatch, tmp_path)
    code, out, _ = _dr(["meter", "baseline", "--db", db, "--meter", "home-1", "--start", str(EVENT),
                        "--end", str(EVENT + 3600), "--method", "meter-before-after", "--json"],
                       capsys, monkeypatch, tmp_path)
    data = json.loads(out)
    assert code == 0 and data["delivered_watts"] == 500 and data["baseline_wh"] == 1000


def test_check_agrees_on_the_same_data_and_disagrees_on_other_data(tmp_path, capsys, monkeypatch) -> None:
    mine, theirs = str(tmp_path / "mine.sqlite"), str(tmp_path / "theirs.sqlite")
    _dr(["meter", "import", str(_csv(tmp_path / "a.csv")), "--db", mine], capsys, monkeypatch, tmp_path)
    _dr(["meter", "import", str(_csv(tmp_path / "b.csv", during=200)), "--db", theirs], capsys, monkeypatch, tmp_path)
    record = tmp_path / "rec.json"
    _dr(["meter", "baseline", "--db", mine, "--meter", "home-1", "--start", str(EVENT), "--end", str(EVENT + 3600),
         "--method", "meter-before-after", "--record", str(record)], capsys, monkeypatch, tmp_path)
    code, out, _ = _dr(["meter", "check", str(record), "--db", mine], capsys, monkeypatch, tmp_path)
    assert code == 0 and "agrees" in out
    code, out, _ = _dr(["meter", "check", str(record), "--db", theirs, "--json"], capsys, monkeypatch, tmp_path)
    data = json.loads(out)
    assert code == 3 and not data["agrees"] and not data["same_data"] and data["recomputed_watts"] == 200


def test_check_takes_a_delivery_record_from_the_utility(tmp_path, capsys, monkeypatch) -> None:
    db = str(tmp_path / "m.sqlite")
    _dr(["meter", "import", str(_csv(tmp_path / "a.csv")), "--db", db], capsys, monkeypatch, tmp_path)
    code, out, _ = _dr(["meter", "baseline", "--db", db, "--meter", "home-1", "--start", str(EVENT),
                        "--end", str(EVENT + 3600), "--method", "meter-before-after", "--json"],
                       capsys, monkeypatch, tmp_path)
    delivery = {"address": "0x" + "11" * 20, "intervals": [], "fingerprint": json.loads(json.loads(out)["record"])}
    (tmp_path / "d.json").write_text(json.dumps(delivery))
    code, out, _ = _dr(["meter", "check", str(tmp_path / "d.json"), "--db", db], capsys, monkeypatch, tmp_path)
    assert code == 0 and "published 500 W, recomputed 500 W" in out


@pytest.mark.parametrize("args, message", [
    (["meter", "baseline", "--meter", "x", "--start", "1", "--end", "2"], "no meter store: pass --db"),
    (["meter", "baseline", "--db", "DB", "--meter", "nobody", "--start", str(EVENT), "--end", str(EVENT + 3600)],
     "meter nobody is not in"),
    (["meter", "baseline", "--db", "DB", "--meter", "home-1", "--start", str(EVENT), "--end", str(EVENT + 3600),
      "--method", "guess"], "unknown baseline method 'guess'"),
    (["meter", "baseline", "--db", "DB", "--meter", "home-1", "--start", str(EVENT), "--end", str(EVENT + 3600)],
     "caiso-10in10 needs 10"),
    (["meter", "baseline", "--db", "DB", "--meter", "x'; DROP TABLE mv_readings;--", "--start", "1", "--end", "2"],
     "is not in"),  # parameterised SQL: a hostile id is just an unknown meter
    (["meter", "import", "missing.csv", "--db", "DB"], "no such file missing.csv"),
    (["meter", "check", "a.csv", "--db", "DB"], "not a published measurement record"),
])
def test_user_errors_are_one_line_without_a_traceback(tmp_path, capsys, monkeypatch, args, message) -> None:
    db = str(tmp_path / "m.sqlite")
    _dr(["meter", "import", str(_csv(tmp_path / "a.csv")), "--db", db], capsys, monkeypatch, tmp_path)
    code, out, err = _dr([db if a == "DB" else a for a in args], capsys, monkeypatch, tmp_path)
    assert code == 1 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    code, out, _ = _dr(["meter", "baseline", "--db", db, "--meter", "home-1", "--start", str(EVENT), "--end",
                        str(EVENT + 3600), "--method", "meter-before-after", "--json"], capsys, monkeypatch, tmp_path)
    assert code == 0 and json.loads(out)["delivered_watts"] == 500  # the store is intact


def test_a_bad_reading_in_an_import_stores_nothing_and_names_the_line(tmp_path, capsys, monkeypatch) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(f"meter_id,start,seconds,wh\nm,{T0},900,250\nm,{T0 + 900},900,0.25\n")
    db = str(tmp_path / "m.sqlite")
    code, _, err = _dr(["meter", "import", str(bad), "--db", db], capsys, monkeypatch, tmp_path)
    assert code == 1 and "line 3" in err
    code, _, err = _dr(["meter", "baseline", "--db", db, "--meter", "m", "--start", "1", "--end", "2"],
                       capsys, monkeypatch, tmp_path)
    assert "meter m is not in" in err


@pytest.mark.parametrize("flags, message", [
    (["--meter-db", "no-such-dir/m.sqlite"], "folder"),
    (["--meter-db", "m.sqlite", "--baseline", "guess"], "unknown baseline method 'guess'"),
])
def test_utility_run_refuses_a_bad_meter_store_or_method_before_touching_the_chain(
        tmp_path, capsys, monkeypatch, flags, message) -> None:
    code, _, err = _dr(["utility", "run", "--rpc-url", "http://127.0.0.1:9", *flags], capsys, monkeypatch, tmp_path)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1


def test_baseline_takes_the_calendar_zone_for_local_times_and_publishes_it(tmp_path, capsys, monkeypatch) -> None:
    """--timezone: local times and days in that zone (17:00 UTC is 19:00 at +02:00), and the
    offset and holidays go into the published parameters; a bad one is one line."""
    db = str(tmp_path / "m.sqlite")
    _dr(["meter", "import", str(_csv(tmp_path / "a.csv")), "--db", db], capsys, monkeypatch, tmp_path)
    code, out, _ = _dr(["meter", "baseline", "--db", db, "--meter", "home-1", "--start", "2025-07-14T19:00",
                        "--end", "2025-07-14T20:00", "--timezone", "+02:00", "--method", "meter-before-after",
                        "--json"], capsys, monkeypatch, tmp_path)
    data = json.loads(out)
    assert code == 0 and data["event_start"] == EVENT and data["delivered_watts"] == 500
    assert json.loads(data["record"])["params"]["utc_offset_s"] == 7200
    code, _, err = _dr(["meter", "baseline", "--db", db, "--meter", "home-1", "--start", str(EVENT),
                        "--end", str(EVENT + 3600), "--timezone", "Mars/Olympus"], capsys, monkeypatch, tmp_path)
    assert code != 0 and "unknown time zone 'Mars/Olympus'" in err and "Traceback" not in err
    code, _, err = _dr(["meter", "baseline", "--db", db, "--meter", "home-1", "--start", str(EVENT),
                        "--end", str(EVENT + 3600), "--holidays", "July 4th"], capsys, monkeypatch, tmp_path)
    assert code != 0 and "holiday 'July 4th' is not an ISO date" in err and len(err.strip().splitlines()) == 1
