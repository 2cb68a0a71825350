"""OpenADR 3.0: the Flask blueprint served on loopback, exercised with the toadr3 client library.

A request and its selection happen on a real chain (anvil); the utility publishes the program,
the advance notice and the winner's dispatch; VENs fetch a token with client credentials, read
their events, register and report power; every object served is checked against the 3.0.1
schema; hostile clients are refused.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import toadr3
from flask import Flask
from werkzeug.serving import make_server

from demand_response import devchain
from demand_response.chain import Signer
from demand_response.openadr import oadr3
from demand_response.openadr.context import MarketContext
from flaskapp import openadr3

from openadr_helpers import CAP


class _Server:
    """The blueprint in a minimal Flask app, served by werkzeug on a free loopback port."""

    def __init__(self, db: Path) -> None:
        self.reports: list[tuple[str, dict[str, Any]]] = []
        app = Flask(__name__)
        app.config.update(OPENADR3_DB=str(db), OPENADR3_ON_REPORT=lambda a, r: self.reports.append((a, r)))
        openadr3.register(app)
        self.app = app
        self.port = devchain.free_port()
        self._server = make_server("127.0.0.1", self.port, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{openadr3.PREFIX}"

    @property
    def store(self) -> oadr3.Oadr3Store:
        with self.app.app_context():
            return openadr3.store()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(5)
        self.store.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    srv = _Server(tmp_path / "oadr3.sqlite")
    yield srv
    srv.stop()


def _token(server: _Server, client_id: str, secret: str, scope: str = "") -> requests.Response:
    return requests.post(f"{server.url}/auth/token", timeout=5, data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, "scope": scope})


def _session(server: _Server, client_id: str, secret: str) -> requests.Session:
    session = requests.Session()
    reply = _token(server, client_id, secret)
    assert reply.status_code == 200, reply.text
    session.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"
    return session


def _toadr3(server: _Server, client_id: str, secret: str, scope: str = "read_all write_reports write_vens"):
    config = toadr3.OAuthConfig(token_url=f"{server.url}/auth/token", grant_type="client_credentials",
                                claims={"scope": scope}, client_id=client_id, client_secret=secret)
    return toadr3.ToadrClient(server.url, config)


def _settled_request(anvil, w3, dr, utility, keys) -> tuple[int, Signer, Signer]:
    alice, bob = (Signer.from_key(w3, k) for k in keys[1:3])
    for signer in (alice, bob):
        dr.enrol(utility, signer.address)
    anvil.rpc("evm_mine", [])
    now = w3.eth.get_block("latest")["timestamp"]
    rid, _ = dr.request_reduction(utility, 3000, now + 90, now + 3690, now + 30, CAP, 0, None)
    dr.submit_bids(alice, rid, [2000], [10**12])
    dr.submit_bids(bob, rid, [2000], [2 * 10**12])
    anvil.rpc("evm_increaseTime", [31])
    anvil.rpc("evm_mine", [])
    dr.select_winners(utility, rid)
    return rid, alice, bob


def test_a_ven_reads_its_award_and_reports_power_through_toadr3(anvil, w3, dr, utility, keys, server):
    rid, alice, bob = _settled_request(anvil, w3, dr, utility, keys)
    info = dr.get_request(rid)
    context = MarketContext(w3.eth.chain_id, dr.address, rid)
    store = server.store
    program = oadr3.publish_programme(store, context)
    oadr3.publish_notice(store, context, info.target_watts, info.event_start, info.event_end)
    from demand_response.openadr.vtn import winners_of

    for address, watts in winners_of(dr, rid).items():
        oadr3.publish_dispatch(store, context, address, watts, info.event_start, info.event_end)
    alice_id, alice_secret = store.add_client("ven", alice.address)
    bob_id, bob_secret = store.add_client("ven", bob.address)

    async def _as_alice() -> tuple[list, list, Any]:
        client = _toadr3(server, alice_id, alice_secret)
        try:
            programs = await client.get_programs()
            events = await client.get_events(program_id=programs[0].id)
            dispatch = next(e for e in events if e.targets)
            report = toadr3.models.Report.create_report(
                dispatch, client_name=alice.address, report_type=oadr3.USAGE_PAYLOAD, report_values=[1.5],
                target_type="VEN_NAME")
            posted = await client.post_report(report)
            return programs, events, posted
        finally:
            await client.client_session.close()

    programs, events, posted = asyncio.run(_as_alice())
    assert [p.program_name for p in programs] == [f"dr://{w3.eth.chain_id}/{dr.address}"]
    assert len(events) == 2  # the notice (untargeted) and alice's own dispatch, not bob's
    dispatch = next(e for e in events if e.targets)
    assert dispatch.event_name == str(context)
    assert dispatch.intervals[0].payloads[0].values == [-2.0]  # kW: alice's 2000 W accepted
    assert int(dispatch.interval_period.start.timestamp()) == info.event_start
    assert posted.id and posted.client_name == alice.address
    assert [(a, list(oadr3.report_watts(r))) for a, r in server.reports] == [(alice.address, [(alice.address, 1500.0)])]

    # every object served is valid 3.0.1 JSON (checked with the vendored schema, not the client)
    session = _session(server, alice_id, alice_secret)
    for path, name in (("programs", "program"), ("events", "event"), ("reports", "report")):
        items = session.get(f"{server.url}/{path}", timeout=5).json()
        assert items and all(oadr3.schema_errors(name, item) == [] for item in items), path
    ven = session.post(f"{server.url}/vens", json={"venName": alice.address}, timeout=5)
    assert ven.status_code == 201 and oadr3.schema_errors("ven", ven.json()) == []

    bob_events = _session(server, bob_id, bob_secret).get(f"{server.url}/events", timeout=5).json()
    assert [e["intervals"][0]["payloads"][0]["values"] for e in bob_events] == [[3.0], [-1.0]]
    assert program["id"] == programs[0].id


def test_a_cancelled_request_removes_its_events(anvil, w3, dr, utility, keys, server):
    context = MarketContext(w3.eth.chain_id, dr.address, 7)
    store = server.store
    oadr3.publish_notice(store, context, 1000, 2_000_000_000, 2_000_003_600)
    oadr3.publish_dispatch(store, context, "0x" + "22" * 20, 500, 2_000_000_000, 2_000_003_600)
    bl_id, bl_secret = store.add_client("bl")
    session = _session(server, bl_id, bl_secret)
    assert len(session.get(f"{server.url}/events", timeout=5).json()) == 2
    assert oadr3.cancel_request(store, context) == 2
    assert session.get(f"{server.url}/events", timeout=5).json() == []


def test_credentials_and_objects_survive_a_restart(tmp_path):
    first = _Server(tmp_path / "oadr3.sqlite")
    ven_id, secret = first.store.add_client("ven", "0x" + "33" * 20)
    _session(first, ven_id, secret).post(f"{first.url}/vens", json={"venName": "0x" + "33" * 20}, timeout=5)
    first.stop()
    second = _Server(tmp_path / "oadr3.sqlite")
    try:
        vens = _session(second, ven_id, secret).get(f"{second.url}/vens", timeout=5).json()
        assert [v["venName"] for v in vens] == ["0x" + "33" * 20]
    finally:
        second.stop()


def test_hostile_clients_are_refused_with_one_line_problems(server):
    store = server.store
    mallory = "0x" + "44" * 20
    ven_id, secret = store.add_client("ven", mallory)
    bl_id, bl_secret = store.add_client("bl")
    url = server.url

    assert requests.get(f"{url}/programs", timeout=5).status_code == 401
    assert requests.get(f"{url}/programs", headers={"Authorization": "Bearer forged"}, timeout=5).status_code == 401
    assert _token(server, ven_id, "wrong").json()["error"] == "invalid_client"
    assert _token(server, ven_id, secret, scope="write_events").json()["error"] == "invalid_scope"
    assert _token(server, "nobody", secret).status_code == 401
    bad_grant = requests.post(f"{url}/auth/token", data={"grant_type": "password"}, timeout=5)
    assert bad_grant.json()["error"] == "unsupported_grant_type"

    with pytest.raises(toadr3.ToadrError):
        asyncio.run(_programs_with(server, ven_id, "wrong"))

    ven = _session(server, ven_id, secret)
    bl = _session(server, bl_id, bl_secret)
    program = bl.post(f"{url}/programs", json={"programName": "dr-test"}, timeout=5).json()
    event = {"programID": program["id"], "intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [1]}]}]}

    refused = ven.post(f"{url}/events", json=event, timeout=5)
    assert refused.status_code == 403 and "write_events" in refused.json()["detail"]
    assert ven.post(f"{url}/programs", json={"programName": "mine"}, timeout=5).status_code == 403
    assert ven.post(f"{url}/vens", json={"venName": "0x" + "55" * 20}, timeout=5).status_code == 403

    invalid = bl.post(f"{url}/events", json=dict(event, intervals=[{"id": "zero"}]), timeout=5)
    assert invalid.status_code == 400
    problem = invalid.json()
    assert oadr3.schema_errors("problem", problem) == [] and "\n" not in problem["detail"]
    assert "intervals/0" in problem["detail"]
    assert bl.post(f"{url}/events", json=dict(event, programID="nope"), timeout=5).status_code == 404
    created = bl.post(f"{url}/events", json=event, timeout=5).json()

    report = {"programID": program["id"], "eventID": created["id"], "clientName": "0x" + "66" * 20,
              "resources": [{"resourceName": "meter", "intervals": [{"id": 0, "payloads": [{"type": "USAGE", "values": [1]}]}]}]}
    assert ven.post(f"{url}/reports", json=report, timeout=5).status_code == 403  # someone else's name
    assert ven.post(f"{url}/reports", json=dict(report, clientName=mallory, eventID="nope"), timeout=5).status_code == 404
    assert ven.post(f"{url}/reports", json=dict(report, clientName=mallory), timeout=5).status_code == 201
    assert server.reports and server.reports[0][0] == mallory

    assert ven.get(f"{url}/events?skip=-1", timeout=5).status_code == 400
    assert ven.get(f"{url}/events?limit=lots", timeout=5).status_code == 400
    assert ven.post(f"{url}/vens", data="x" * (openadr3.MAX_BODY + 1), timeout=5).status_code == 413
    assert ven.post(f"{url}/vens", data="not json", timeout=5).status_code == 400
    assert ven.get(f"{url}/nothing-here", timeout=5).status_code == 404


async def _programs_with(server: _Server, client_id: str, secret: str) -> list:
    client = _toadr3(server, client_id, secret)
    try:
        return await client.get_programs()
    finally:
        await client.client_session.close()
