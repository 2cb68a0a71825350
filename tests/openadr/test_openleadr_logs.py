"""OpenLEADR's log lines as the daemons show them: an unreachable VTN once per ten minutes, not
twice per poll; a refusal the VTN already logged not echoed; a reply logged with stray arguments
joined into one line. The filter alone, on real ``logging`` records (no chain, no network)."""

from __future__ import annotations

import logging

from demand_response.openadr import logs


def _record(message: str, level: int = logging.ERROR, *args: object) -> logging.LogRecord:
    return logging.LogRecord("openleadr", level, "client.py", 1, message, args or None, None)


def _poll_failure() -> list[logging.LogRecord]:
    return [_record("Could not connect to server with URL http://127.0.0.1:9/OpenADR2/Simple/2.0b:"),
            _record("ClientConnectorError: Cannot connect to host 127.0.0.1:9")]


def test_an_unreachable_vtn_is_said_once_with_its_error_and_not_again_within_ten_minutes(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: clock[0])
    keep = logs._OneLineOpenLeadrLogs()
    first = [r for r in _poll_failure() if keep.filter(r)]
    assert len(first) == 2 and "said again in 10 min" in first[0].getMessage()
    for _ in range(5):  # the next polls
        clock[0] += 10
        assert [r for r in _poll_failure() if keep.filter(r)] == []
    assert keep.filter(_record("The VTN server encountered an error", logging.ERROR))  # other errors still show
    clock[0] += logs.REPEAT_S
    assert len([r for r in _poll_failure() if keep.filter(r)]) == 2


def test_a_refusal_the_vtn_logged_itself_is_not_echoed_and_stray_arguments_are_joined():
    keep = logs._OneLineOpenLeadrLogs()
    assert not keep.filter(_record("An exception occurred during the execution of your ReportService handler: "
                                   "InvalidIdError: report request x is not one of this VEN's"))
    assert keep.filter(_record("An exception occurred during the execution of your EventService handler: KeyError"))
    joined = _record("oadrCreatedOpt", logging.INFO, {"opt_id": "1"})
    assert keep.filter(joined) and joined.getMessage() == "oadrCreatedOpt {'opt_id': '1'}"
