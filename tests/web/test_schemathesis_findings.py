"""What schemathesis found (``make fuzz``, tools/schemathesis_run.py), each kept fixed.

The app needs no chain for these: every answer comes before a chain read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flask_wtf")

from flaskapp import create_app  # noqa: E402

SPEC = json.loads((Path(__file__).resolve().parents[2] / "flaskapp" / "static" / "openapi.json").read_text())


@pytest.fixture
def client(tmp_path: Path) -> Any:
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "RPC_URL": "http://127.0.0.1:9", "WEB_AUTH": "off",
                      "DR_ENV_FILE": str(tmp_path / "none.env"), "STATE_DIR": str(tmp_path), "DR_ROLE": "both"})
    return app.test_client()


def test_a_method_the_path_does_not_take_gets_405_with_the_allow_header(client: Any) -> None:
    for method, path in (("TRACE", "/api/results"), ("DELETE", "/api/status"), ("POST", "/api/bids")):
        response = client.open(path, method=method)
        assert response.status_code == 405, (method, path)
        assert "GET" in response.headers["Allow"] and method not in response.headers["Allow"]
        assert response.get_json()["status"] == 405


def test_an_unknown_request_state_is_refused_with_400_not_read_as_all(client: Any) -> None:
    response = client.get("/api/requests?state=%C2%86h%F1")
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("state must be all or open")
    assert "400" in SPEC["paths"]["/api/requests"]["get"]["responses"]


def test_the_preview_schema_takes_the_forms_empty_optional_fields_and_refuses_words() -> None:
    params = {p["name"]: p for p in SPEC["paths"]["/api/utility/preview"]["get"]["parameters"]}
    for name, param in params.items():
        pattern = param["schema"].get("pattern")
        if pattern is None:
            continue
        assert re.fullmatch(pattern, "12") and not re.fullmatch(pattern, "twelve"), name
        assert bool(re.fullmatch(pattern, "")) is (not param.get("required")), name
