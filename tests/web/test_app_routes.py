"""What create_app serves besides the console and the dashboard: metrics, health and OpenADR 3."""

from __future__ import annotations

import pytest

from flaskapp import create_app


@pytest.fixture(autouse=True)
def _no_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("DR_ENV_FILE", str(tmp_path / "absent.env"))


def test_a_utility_app_serves_metrics_health_and_the_openadr3_api_behind_a_token() -> None:
    client = create_app({"DR_ROLE": "utility", "TESTING": True}).test_client()
    assert client.get("/metrics").status_code == 200
    assert client.get("/openadr3/3.0.1/programs").status_code == 401  # a bearer token is required
    assert client.get("/healthz").status_code in (200, 503)


def test_a_consumer_app_serves_no_openadr3_api() -> None:
    client = create_app({"DR_ROLE": "consumer", "TESTING": True}).test_client()
    assert client.get("/openadr3/3.0.1/programs").status_code == 404
    assert client.get("/metrics").status_code == 200
