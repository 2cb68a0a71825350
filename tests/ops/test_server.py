"""``run_flask.sh``: gunicorn by default, on 127.0.0.1, answering HTTP; ``--dev`` runs Flask's server.

Real processes on free ports, a real anvil behind ``/healthz``; the operations views of the
web app (``flaskapp/ops.py``) are scraped through the production server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon_helpers import ROOT, dr_env, wait_until
from demand_response import devchain
from demand_response.chain import Signer, connect
from demand_response.contract import DemandReduction


def _get(url: str, **headers: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()
    except OSError:
        return 0, {}, ""


class _Server:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.port = devchain.free_port()
        self.log = log
        self._out = open(log, "ab")
        env = dict(env, FLASK_RUN_PORT=str(self.port))
        self.process = subprocess.Popen([str(ROOT / "run_flask.sh"), *args], cwd=ROOT, env=env, stdout=self._out,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(lambda: _get(self.url + "/")[0] or self.process.poll() is not None, 60, what="the web server")
        assert self.process.poll() is None, log.read_text()

    def stop(self) -> int:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            code = self.process.wait(10)
        self._out.close()
        return code


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    node = devchain.start("anvil", accounts=2, chain_id=31337, log_path=tmp_path / "anvil.log")
    w3 = connect(node.url)
    address = DemandReduction.deploy(Signer(w3, w3.eth.accounts[0])).address
    (tmp_path / ".env").write_text(f"RPC_URL={node.url}\nCONTRACT_ADDRESS={address}\nSTATE_DIR={tmp_path}\n")
    yield dr_env(DR_ENV_FILE=str(tmp_path / ".env"), WEB_ACCESS_LOG="")
    node.stop()


def test_run_flask_serves_with_gunicorn_on_loopback_with_metrics_and_health(env: dict[str, str], tmp_path: Path) -> None:
    server = _Server([], env, tmp_path / "web.log")
    try:
        status, headers, _ = _get(server.url + "/")
        assert status == 200 and headers["Server"] == "gunicorn"
        status, headers, body = _get(server.url + "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
        names = {f.name for f in text_string_to_metric_families(body)}
        assert {"dr_bids_sent", "dr_rpc_errors", "dr_listener_lag_blocks"} <= names
        status, headers, body = _get(server.url + "/healthz")
        report = json.loads(body)
        assert status == 200 and report["status"] == "ok", report
        assert report["checks"]["daemons"]["detail"] == "no daemon runs in this process"
    finally:
        assert server.stop() == 0
    log = (tmp_path / "web.log").read_text()
    assert f"Listening at: http://127.0.0.1:{server.port}" in log and "Starting gunicorn" in log
    assert "Do not use it in a production deployment" not in log  # Flask's warning


def test_two_workers_json_logs_a_metrics_token_and_503_when_the_node_is_gone(env: dict[str, str], tmp_path: Path) -> None:
    env = dict(env, DR_ENV_FILE=str(tmp_path / "other.env"), LOG_FORMAT="json", WEB_WORKERS="2",
               METRICS_TOKEN="scrape-t0ken")
    (tmp_path / "other.env").write_text(f"RPC_URL=http://127.0.0.1:{devchain.free_port()}\n"
                                        f"CONTRACT_ADDRESS={'0x' + '42' * 20}\n")
    server = _Server([], env, tmp_path / "web.log")
    try:
        status, _, body = _get(server.url + "/healthz")
        report = json.loads(body)
        assert status == 503 and not report["checks"]["node"]["ok"]
        assert _get(server.url + "/metrics")[0] == 401
        assert _get(server.url + "/metrics", Authorization="Bearer wrong")[0] == 401
        assert _get(server.url + "/metrics", Authorization="Bearer scrape-t0ken")[0] == 200
    finally:
        assert server.stop() == 0
    lines = [json.loads(line) for line in (tmp_path / "web.log").read_text().splitlines() if line.startswith("{")]
    assert any(line["message"].startswith("Starting gunicorn") for line in lines)
    assert sum(line["message"].startswith("Booting worker") for line in lines) == 2


def test_dev_flag_runs_flasks_development_server(env: dict[str, str], tmp_path: Path) -> None:
    server = _Server(["--dev"], env, tmp_path / "dev.log")
    try:
        status, headers, _ = _get(server.url + "/")
        assert status == 200 and headers["Server"].startswith("Werkzeug")
    finally:
        server.stop()
    assert "gunicorn" not in (tmp_path / "dev.log").read_text().lower()


def _requests_total(url: str) -> float:
    """``dr_web_requests_total`` over every method and status, from one scrape."""
    status, _, body = _get(url + "/metrics")
    assert status == 200, body
    return sum(sample.value for family in text_string_to_metric_families(body) for sample in family.samples
               if sample.name == "dr_web_requests_total")


def test_two_workers_add_up_their_counters_in_one_scrape_and_keep_them_after_a_worker_dies(
        env: dict[str, str], tmp_path: Path) -> None:
    """Prometheus multiprocess mode: each worker writes its own values, any worker's scrape
    sums them; a stale value file from an earlier run is cleared at start."""
    from concurrent.futures import ThreadPoolExecutor

    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_999999.db").write_bytes(b"stale")  # an earlier run's: must not be read
    server = _Server([], dict(env, WEB_WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(folder)), tmp_path / "web.log")
    try:
        assert not (folder / "counter_999999.db").exists()
        before = _requests_total(server.url)  # the start-up probes (this scrape counts after it answers)
        sent = 1

        def both_workers_counted() -> bool:
            nonlocal sent
            with ThreadPoolExecutor(8) as pool:  # new connections at once: both workers accept some
                sent += sum(status == 200 for status in pool.map(lambda _: _get(server.url + "/api/health")[0],
                                                               range(16)))
            return len(list(folder.glob("counter_*.db"))) == 2

        wait_until(both_workers_counted, 60, interval=0.2, what="both workers to answer a request")
        scraped = [_requests_total(server.url) for _ in range(4)]  # whichever worker answers, the same sum
        # every request counted once, in whichever worker answered it; a scrape counts itself after it answers
        assert scraped == [before + sent + k for k in range(4)], (before, sent, scraped)
        worker = int(next(folder.glob("counter_*.db")).stem.split("_")[1])
        os.kill(worker, signal.SIGKILL)  # gunicorn starts another; the dead one's counts still count
        wait_until(lambda: "Booting worker" in server.log.read_text().split(f"pid: {worker}")[-1], 60,
                   what="a new worker")
        assert _requests_total(server.url) >= before + sent + 4
    finally:
        assert server.stop() == 0


def test_a_live_stream_through_gunicorn_hears_a_request_and_is_ended_first_when_the_server_stops(
        env: dict[str, str], tmp_path: Path) -> None:
    """Server-sent events through the production server: a gthread worker streams while it
    answers other requests, and its SIGTERM says ``bye`` to the stream instead of leaving the
    stop waiting for it."""
    import re as _re

    dotenv = Path(env["DR_ENV_FILE"]).read_text()
    rpc = _re.search(r"RPC_URL=(\S+)", dotenv).group(1)
    contract = _re.search(r"CONTRACT_ADDRESS=(\S+)", dotenv).group(1)
    server = _Server([], dict(env, WEB_WORKERS="2", WEB_AUTH="off"), tmp_path / "web.log")
    stopped = False
    try:
        stream = urllib.request.urlopen(server.url + "/api/live", timeout=30)
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        lines = iter(stream)
        assert next(lines).decode().startswith("retry:")
        assert any(line.startswith(b"event: hello") for line in lines)
        assert _get(server.url + "/api/health")[0] == 200  # the stream holds a thread, not the worker
        w3 = connect(rpc)
        now = int(w3.eth.get_block("latest")["timestamp"])
        request_id, _ = DemandReduction.at(w3, contract).request_reduction(
            Signer(w3, w3.eth.accounts[0]), 2_000, now + 900, now + 4500, now + 600, 128 * 10**12)
        event = next(line for line in lines if line.startswith(b"data:") and b'"kinds"' in line)
        assert json.loads(event[5:])["requests"] == [request_id]
        assert server.stop() == 0
        stopped = True
        rest = b"".join(lines)
        assert b"event: bye" in rest and b'"reason":"shutdown"' in rest
    finally:
        if not stopped:
            server.stop()
