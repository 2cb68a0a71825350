"""A page's live refresh (app.js fetches its own address again) leaves the flashed messages
for the page the person sees next, and works on the page the request form's post rendered.

Found by the stablecoin form test in Chromium: the "Posted request 1" line was sometimes
missing after posting, because the form's page (at /utility/requests after a preview) refreshed
with a GET there, which was a 405 error page that took the message. No chain is needed: the
pages render with the chain down."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("flask_wtf")

from demand_response import devchain  # noqa: E402
from flaskapp import create_app  # noqa: E402


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DR_ENV_FILE", str(tmp_path / "absent.env"))
    app = create_app({"TESTING": True, "SECRET_KEY": "refresh-test", "WEB_AUTH": "off", "DR_ROLE": "utility",
                      "RPC_URL": f"http://127.0.0.1:{devchain.free_port()}", "STATE_DIR": str(tmp_path / "state"),
                      "UTILITY_PRIVATE_KEY": devchain.dev_private_keys(1)[0]})
    return app.test_client()


def test_a_live_refresh_does_not_take_the_message_meant_for_the_next_page(client) -> None:
    with client.session_transaction() as session:
        session["_flashes"] = [("ok", "Posted request 7")]
    refreshed = client.get("/utility/", headers={"X-DR-Refresh": "1"})
    assert refreshed.status_code == 200 and "Posted request 7" not in refreshed.get_data(as_text=True)
    shown = client.get("/utility/")
    assert "Posted request 7" in shown.get_data(as_text=True)
    assert "Posted request 7" not in client.get("/utility/").get_data(as_text=True)  # shown once


def test_the_request_forms_address_answers_a_get_with_the_dashboard(client) -> None:
    response = client.get("/utility/requests", headers={"X-DR-Refresh": "1"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/utility/")
