"""Live updates (``GET /api/live``, flaskapp/live.py) against a real ganache, through Flask's
test client streaming the response: what a stream says when a request is posted, one watcher
for every stream of an app, the per-worker cap, a revoked token ending its stream, and no
stream without a user. The page side (EventSource, the polling fallback) is in
test_browser_live.py."""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("flask_wtf")

from demand_response import devchain  # noqa: E402
from demand_response.chain import Signer, connect  # noqa: E402
from demand_response.contract import DemandReduction  # noqa: E402
from demand_response.webusers import UserStore  # noqa: E402
from flaskapp import create_app  # noqa: E402

CAP = 128 * 10**12


@pytest.fixture(scope="module")
def node(start_chain: Any, request: pytest.FixtureRequest) -> devchain.DevChain:
    return start_chain(request, "ganache", accounts=2, balance_eth=1000)


@pytest.fixture(scope="module")
def market(node: devchain.DevChain) -> dict[str, Any]:
    keys = devchain.dev_private_keys(2)
    utility = Signer.from_key(connect(node.url), keys[0])
    return {"dr": DemandReduction.deploy(utility), "utility": utility, "keys": keys}


def _app(node: devchain.DevChain, market: dict[str, Any], tmp_path: Path, **extra: Any) -> Any:
    return create_app({"TESTING": True, "SECRET_KEY": "live-test", "RPC_URL": node.url,
                       "CONTRACT_ADDRESS": market["dr"].address, "CONSUMER_PRIVATE_KEY": market["keys"][1],
                       "STATE_DIR": str(tmp_path / "state"), "DR_ENV_FILE": str(tmp_path / "none.env"),
                       "DEPLOYMENTS_FILE": str(tmp_path / "deployments.json"), "POLL_INTERVAL": "0.1",
                       "WEB_AUTH": "off", **extra})


def _post_request(node: devchain.DevChain, market: dict[str, Any]) -> int:
    now = int(connect(node.url).eth.get_block("latest")["timestamp"])
    request_id, _ = market["dr"].request_reduction(market["utility"], 5_000, now + 400, now + 4000, now + 300, CAP)
    return request_id


class Reader:
    """Reads a streamed response's events on a thread of its own (a blocked read must not hang the test)."""

    def __init__(self, response: Any) -> None:
        self.response, self.events = response, queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = ""
        try:
            for chunk in self.response.response:
                buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    fields = dict(line.split(": ", 1) for line in block.splitlines() if line and ":" in line[1:])
                    if "event" in fields:
                        self.events.put((fields["event"], json.loads(fields["data"])))
                    elif block.startswith(":"):
                        self.events.put(("heartbeat", {}))
        finally:
            self.events.put(("end", {}))

    def next(self, *names: str, timeout: float = 30.0) -> tuple[str, dict[str, Any]]:
        """The next event named one of ``names`` (others are skipped)."""
        while True:
            event = self.events.get(timeout=timeout)
            if not names or event[0] in names or event[0] == "end":
                return event



@pytest.fixture
def feeds() -> Iterator[list[Any]]:
    """Apps' live feeds to close at the end (a stream blocked on another thread cannot be
    closed from this one; the feed ends them, as a stopping worker does)."""
    opened: list[Any] = []
    yield opened
    for feed in opened:
        feed.close()


def test_every_stream_hears_a_new_request_from_one_watcher_per_app(node: devchain.DevChain, market: dict[str, Any],
                                                                   tmp_path: Path, feeds: list[Any]) -> None:
    app = _app(node, market, tmp_path)
    feeds.append(app.extensions["dr_live"])
    client = app.test_client()
    streams = []
    for _ in range(3):
        response = client.get("/api/live", buffered=False)
        assert response.status_code == 200 and response.mimetype == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-store"
        streams.append(Reader(response))
    assert all(reader.next("hello")[0] == "hello" for reader in streams)
    feed = app.extensions["dr_live"]
    assert feed.streams == 3
    assert [t.name for t in threading.enumerate()].count("dr-live-feed") >= 1
    request_id = _post_request(node, market)
    for reader in streams:
        name, data = reader.next("chain")
        assert name == "chain" and "request" in data["kinds"] and request_id in data["requests"]
        assert data["block"] >= 1
    assert feed._thread is not None and feed._thread.is_alive()  # one thread, however many streams
    feed.close("shutdown")
    for reader in streams:
        assert reader.next("bye") == ("bye", {"reason": "shutdown"})
        assert reader.next("end")[0] == "end"
    assert feed.streams == 0


def test_a_worker_over_its_stream_cap_answers_503_and_the_page_polls(node: devchain.DevChain,
                                                                     market: dict[str, Any], tmp_path: Path,
                                                                     feeds: list[Any]) -> None:
    app = _app(node, market, tmp_path, WEB_LIVE_STREAMS="1")
    feeds.append(app.extensions["dr_live"])
    client = app.test_client()
    assert Reader(client.get("/api/live", buffered=False)).next("hello")[0] == "hello"
    refused = client.get("/api/live")
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "60"
    assert "1 live streams already" in refused.get_json()["error"]


def test_live_updates_switched_off_answer_404_and_the_pages_get_no_stream_url(
        node: devchain.DevChain, market: dict[str, Any], tmp_path: Path) -> None:
    client = _app(node, market, tmp_path, WEB_LIVE="off").test_client()
    assert client.get("/api/live").status_code == 404
    assert 'data-live-stream=""' in client.get("/consumer/").get_data(as_text=True)


def test_a_stream_needs_a_user_and_ends_when_its_token_is_revoked(node: devchain.DevChain, market: dict[str, Any],
                                                                  tmp_path: Path, feeds: list[Any]) -> None:
    db = tmp_path / "users.sqlite3"
    users = UserStore(db)
    users.add("vic", "viewer", "a viewer's long password")
    _, token = users.new_token("vic")
    app = _app(node, market, tmp_path, WEB_AUTH="on", WEB_USERS_DB=str(db), WEB_LIVE_HEARTBEAT_S="1")
    feeds.append(app.extensions["dr_live"])
    client = app.test_client()
    assert client.get("/api/live").status_code == 401
    assert client.get("/api/live", headers={"Authorization": "Bearer drt_forged"}).status_code == 401
    reader = Reader(client.get("/api/live", buffered=False, headers={"Authorization": f"Bearer {token}"}))
    assert reader.next("hello")[0] == "hello"
    assert reader.next("heartbeat")[0] == "heartbeat"
    users.revoke_token("vic")
    assert reader.next("bye") == ("bye", {"reason": "signed-out"})
    assert reader.next("end")[0] == "end"
    assert app.extensions["dr_live"].streams == 0


def test_a_daemon_started_and_stopped_in_this_worker_is_pushed_to_its_streams(
        node: devchain.DevChain, market: dict[str, Any], tmp_path: Path, feeds: list[Any]) -> None:
    from flaskapp.daemon import stop_all

    app = _app(node, market, tmp_path, WTF_CSRF_ENABLED=False, DR_ROLE="consumer")
    feeds.append(app.extensions["dr_live"])
    client = app.test_client()
    reader = Reader(client.get("/api/live", buffered=False))
    assert reader.next("hello")[0] == "hello"
    try:
        started = client.post("/consumer/daemon/start", data={"source": "gridsim"})
        assert started.status_code == 302, started.get_data(as_text=True)[:400]
        states = {reader.next("daemon")[1]["state"]}
        while "listening" not in states:  # starting, then listening once its first poll answered
            states.add(reader.next("daemon")[1]["state"])
        assert client.post("/consumer/daemon/stop").status_code == 302
        assert reader.next("daemon") == ("daemon", {"state": "stopped"})
    finally:
        stop_all()


def test_every_event_the_live_feed_watches_is_an_event_of_the_contract() -> None:
    """A renamed contract event must not silently end every stream (found when BidSubmitted
    became BidsSubmitted and DeliveryDisputed went into DeliveryMetered)."""
    from demand_response.artifacts import load_artifact
    from flaskapp.live import KINDS

    abi_events = {e["name"] for e in load_artifact("DemandReduction")["abi"] if e.get("type") == "event"}
    watched = {name for names in KINDS.values() for name in names}
    assert watched <= abi_events, sorted(watched - abi_events)
