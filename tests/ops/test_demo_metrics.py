"""``dr demo --metrics-port``: one /metrics for the demo and its consumer daemons (subprocesses,
prometheus-client's multiprocess mode), scraped during a real run: every metric of issue 19
shows, and the ones a clean run moves are higher at the end than at the start."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon_helpers import PYTHON, ROOT, dr_env
from demand_response import devchain

pytestmark = pytest.mark.slow


def _scrape(port: int) -> dict[tuple[str, tuple], float] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _total(scrape: dict, name: str) -> float:
    """Sum of a metric's samples over all label values."""
    return sum(value for (sample, _), value in scrape.items() if sample == name)


def _labels(scrape: dict, name: str) -> set[tuple]:
    return {labels for (sample, labels) in scrape if sample == name}


def test_the_demo_serves_every_metric_and_they_move_during_the_run(tmp_path: Path) -> None:
    port = devchain.free_port()
    log = (tmp_path / "demo.log").open("w")
    demo = subprocess.Popen([PYTHON, "-m", "demand_response", "demo", "--workdir", str(tmp_path / "w"),
                             "--metrics-port", str(port), "--chain", "anvil"],
                            cwd=ROOT, env=dr_env(), stdout=log, stderr=subprocess.STDOUT)
    scrapes = []
    try:
        while demo.poll() is None:
            scrape = _scrape(port)
            if scrape is not None:
                scrapes.append(scrape)
            time.sleep(0.5)
    finally:
        if demo.poll() is None:
            demo.kill()
        log.close()
    output = (tmp_path / "demo.log").read_text()
    assert demo.returncode == 0, output[-3000:]
    assert len(scrapes) >= 2, output[-3000:]
    first, last = scrapes[0], scrapes[-1]
    for moved in ("dr_requests_heard_total", "dr_bids_sent_total", "dr_bids_mined_total",
                  "dr_reaction_seconds_count", "dr_gas_used_total", "dr_fees_paid_wei_total"):
        assert _total(last, moved) > _total(first, moved), moved
    # four consumers bid once each (one transaction with their price levels, all mined), and
    # each one's reaction to the request was observed once
    assert _total(last, "dr_bids_mined_total") == _total(last, "dr_bids_sent_total") >= 4
    assert _total(last, "dr_reaction_seconds_count") == 4
    # gauges: a series per listener (lag, push) and per account paid (owed) appeared during the run
    for gauge in ("dr_listener_lag_blocks", "dr_push_connected", "dr_owed_wei"):
        assert len(_labels(last, gauge)) > len(_labels(first, gauge)), gauge
    assert {("daemon", "utility")} <= {label for labels in _labels(last, "dr_listener_lag_blocks") for label in labels}
    # a clean run has no RPC failures: the series are there, at 0 (tests/daemons/test_push.py moves them)
    assert ("dr_rpc_errors_total", (("kind", "connection"),)) in last
    assert ("dr_rpc_retries_total", (("kind", "push"),)) in last
