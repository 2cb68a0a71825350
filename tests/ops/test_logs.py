"""JSON log lines: the text lines' fields, one object a line, secrets never written.

The secrets come from the environment the process started with (the keys ``dr`` reads for
passwords and keys), as in tests/e2e/test_secrets.py; a real process logs through
``logs.configure`` with ``LOG_FORMAT=json`` and every stderr line must parse.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from daemon_helpers import ROOT
from demand_response import devchain, logs
from demand_response.config import ConfigError

PASSWORD = "s3cret-Horse-battery-7"
KEY = devchain.dev_private_keys(1, "anvil")[0]


def _record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise RuntimeError(f"unlock failed with {PASSWORD}")
        except RuntimeError:
            info = sys.exc_info()
    record = logging.LogRecord("demand_response.consumer", logging.WARNING, __file__, 1, msg, args, info)
    record.created, record.msecs = 1_796_000_000.25, 250.0
    return record


def test_json_lines_carry_the_text_lines_fields() -> None:
    record = _record("home: bid %d kW at %s gwei/kWh", 3, "1.5")
    text = logs.formatter("text", file=True).format(record)
    line = json.loads(logs.formatter("json").format(record))
    assert line == {"time": "2026-11-30T00:53:20.250Z", "level": "WARNING", "logger": "demand_response.consumer",
                    "message": "home: bid 3 kW at 1.5 gwei/kWh", "thread": record.threadName}
    assert text.endswith(" WARNING demand_response.consumer home: bid 3 kW at 1.5 gwei/kWh")
    console = logs.formatter("text").format(record)
    assert console.endswith(".250 home: bid 3 kW at 1.5 gwei/kWh") and len(console.split()[0]) == 12


def test_an_exception_is_one_field_of_one_line() -> None:
    out = logs.JsonFormatter(secrets=[PASSWORD]).format(_record("daemon stopped", exc=True))
    assert "\n" not in out
    line = json.loads(out)
    assert line["exception"].startswith("Traceback") and "RuntimeError: unlock failed with [redacted]" in line["exception"]


def test_secrets_from_the_environment_never_appear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUMER_ACCOUNT_PASS", PASSWORD)
    monkeypatch.setenv("UTILITY_PRIVATE_KEY", KEY)
    monkeypatch.setenv("FLASK_SECRET_KEY", "f" * 64)
    monkeypatch.setenv("WEB3_INFURA_PROJECT_ID", "0123abcd4567ef")
    monkeypatch.setenv("LOG_LEVEL", "INFO")  # not a secret: stays readable
    record = _record("oops %s %s %s %s via https://user:pw@rpc.example/v3/0123abcd4567ef at INFO", PASSWORD.upper(),
                     KEY.removeprefix("0x"), KEY, json.dumps({"p": PASSWORD}))
    for kind in logs.FORMATS:
        out = logs.formatter(kind).format(record)
        for needle in (PASSWORD, KEY.removeprefix("0x"), "user:pw", "0123abcd4567ef"):
            assert needle.lower() not in out.lower(), (kind, out)
        assert out.count(logs.REDACTED) == 6 and "at INFO" in out
        if kind == "json":
            json.loads(out)


def test_log_format_comes_from_the_setting_and_a_bad_one_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_FORMAT", "JSON")
    assert isinstance(logs.formatter(), logs.JsonFormatter)
    assert logs.log_format("text") == "text"
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match="^LOG_FORMAT must be text or json, not 'xml'$"):
        logs.formatter()


_PROCESS = r"""
import logging, sys
from demand_response import logs
logs.configure()
log = logging.getLogger("demand_response.utility")
log.info("request %d settled: paid %s", 7, "0.01 ETH")
logging.getLogger("web3.providers").info("noisy and hidden")
try:
    raise ValueError("bad password " + sys.argv[1])
except ValueError:
    log.exception("unlock failed")
"""


def test_a_process_with_log_format_json_writes_only_json_lines() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "LOG_FORMAT": "json", "UTILITY_ACCOUNT_PASS": PASSWORD}
    done = subprocess.run([sys.executable, "-c", _PROCESS, PASSWORD], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(x["level"], x["logger"], x["message"]) for x in lines] == [
        ("INFO", "demand_response.utility", "request 7 settled: paid 0.01 ETH"),
        ("ERROR", "demand_response.utility", "unlock failed"),
    ]
    assert "ValueError: bad password [redacted]" in lines[1]["exception"] and PASSWORD not in done.stderr
