"""Live updates in headless Chromium: the console learns of a new on-chain request over
server-sent events (``/api/live``), without a reload and without its polling timer, and a
worker over its stream cap leaves the page polling. Reuses test_browser.py's ganache, servers
and browser (its ``stack`` and ``browser`` fixtures; skipped like it without Chromium)."""

from __future__ import annotations

from typing import Any

import pytest

from test_browser import Server, WAIT, browser, stack, sync_api  # noqa: F401 - fixtures used by name

from demand_response import devchain
from demand_response.chain import Signer, connect
from demand_response.contract import DemandReduction
from flaskapp import create_app

pytestmark = pytest.mark.browser
POLLED = ("/api/requests", "/api/status", "/api/daemon", "/api/results", "/api/utility/requests")


def _post_request(stack: dict[str, Any]) -> tuple[int, int]:
    """A request from the utility straight on the chain: (request id, its block)."""
    w3 = connect(stack["rpc"])
    utility = Signer.from_key(w3, devchain.dev_private_keys(1)[0])
    now = int(w3.eth.get_block("latest")["timestamp"])
    request_id, receipt = DemandReduction.at(w3, stack["contract"]).request_reduction(
        utility, 3_000, now + 900, now + 4500, now + 600, 128 * 10**12)
    return request_id, int(receipt["blockNumber"])


def test_the_console_shows_a_new_request_pushed_over_sse_without_reload_or_polling(stack: dict[str, Any],
                                                                                  browser: Any) -> None:
    expect = sync_api.expect
    page = browser.new_page()
    polled: list[str] = []
    page.on("request", lambda r: polled.append(r.url) if any(p in r.url for p in POLLED) else None)
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    page.goto(stack["consumer"] + "/consumer/")
    expect(page.locator("body")).to_have_attribute("data-live-mode", "sse")
    page.wait_for_timeout(2500)  # more than two polling periods (DR_REFRESH_MS=1000) pass: no poll
    assert polled == []
    request_id, block = _post_request(stack)
    expect(page.locator(f"[data-testid=request-{request_id}]")).to_be_visible()
    assert int(page.locator("body").get_attribute("data-live-events")) >= 1
    assert polled == [] and len(navigations) == 1  # no poll, no reload: the stream did it
    feed = stack["consumer_app"].extensions["dr_live"]
    assert feed.block is not None and feed.block - block == 0  # heard in the block it was mined in
    assert feed.streams >= 1
    page.close()


def test_a_page_the_server_refuses_a_stream_polls_instead(stack: dict[str, Any], browser: Any) -> None:
    expect = sync_api.expect
    app = create_app({**_config(stack), "WEB_LIVE_STREAMS": "0"})  # a worker whose streams are all taken
    server = Server(app)
    try:
        page = browser.new_page()
        polled: list[str] = []
        page.on("request", lambda r: polled.append(r.url) if "/api/requests" in r.url else None)
        page.goto(server.url + "/consumer/")
        expect(page.locator("body")).to_have_attribute("data-live-mode", "poll")
        request_id, _ = _post_request(stack)
        expect(page.locator(f"[data-testid=request-{request_id}]")).to_be_visible(timeout=WAIT)
        assert polled, "the fallback polls the JSON API"
        page.close()
    finally:
        server.stop()


def _config(stack: dict[str, Any]) -> dict[str, Any]:
    """The consumer app's settings of test_browser's stack, for another app on the same chain."""
    tmp = stack["tmp"]
    return {"RPC_URL": stack["rpc"], "CONTRACT_ADDRESS": stack["contract"], "DR_ENV_FILE": str(tmp / "missing.env"),
            "DEPLOYMENTS_FILE": str(tmp / "deployments.json"), "POLL_INTERVAL": "0.2", "DR_REFRESH_MS": "1000",
            "WEB_AUTH": "off", "DR_ROLE": "consumer", "CONSUMER_PRIVATE_KEY": devchain.dev_private_keys(2)[1],
            "BIDS_FILE": str(tmp / "bids-fallback.json"), "STATE_DIR": str(tmp / "state-fallback")}
