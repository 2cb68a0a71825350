"""Fuzzing the web console's forms and JSON API (issue 7, daemon half).

hypothesis (schemathesis is not in the lock file) generates requests from
``flaskapp/static/openapi.json`` (every path, every documented query/path parameter, with
both schema-valid and hostile values) plus the HTML forms (bids, utility request, unlock,
fill) and raw ``PUT /api/bids`` bodies. They run through Flask's test client against a real
anvil. After every request: never a 500, and ``bids.json`` is absent or valid per
``demand_response.bids.load_bids`` (a refused write never leaves a broken file).

Sign-in is on (schemathesis would change the pinned hypothesis, so this harness stands in
for it): each documented operation is sent with a credential drawn from the spec's security
schemes (a household's session cookie, an operator's, household's or viewer's bearer token)
or with none or a forged token, which must be 401 everywhere but ``/api/health``; a
household is refused the utility's API and a viewer every write. The other tests' requests
are signed in: the household for the console, the operator for the utility's pages.

``DR_FUZZ_EXAMPLES`` sets the number of examples per strategy (default 100).
"""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("flask_wtf")

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from demand_response import devchain  # noqa: E402
from demand_response.bids import load_bids  # noqa: E402
from demand_response.chain import Signer, connect  # noqa: E402
from demand_response.contract import DemandReduction  # noqa: E402
from demand_response.webusers import UserStore  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402
from flaskapp import create_app  # noqa: E402

EXAMPLES = int(os.environ.get("DR_FUZZ_EXAMPLES", "100"))
SPEC = json.loads((Path(__file__).resolve().parents[2] / "flaskapp" / "static" / "openapi.json").read_text())
COUNT = {"requests": 0}
#: Signed session cookies and bearer tokens of the fuzzing users, by role (set by the fixture).
CREDENTIALS: dict[str, str] = {}
COOKIE = "dr_auto_session"


class _SignedIn(FlaskClient):
    """A test client whose every request is signed in: the operator on the utility's paths,
    the household (bound to the console's account) elsewhere."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        path = args[0] if args and isinstance(args[0], str) else str(kwargs.get("path", ""))
        self.set_cookie(COOKIE, CREDENTIALS["operator-session" if "/utility" in path else "household-session"])
        return super().open(*args, **kwargs)


def _sign_in_users(app: Any, folder: Path, household: str) -> None:
    """Users of each role in the app's users database, their sessions and tokens."""
    users = UserStore(folder / "web-users.sqlite3")
    serializer = app.session_interface.get_signing_serializer(app)
    for name, role, address in (("fuzz-op", "operator", None), ("fuzz-home", "household", household),
                                ("fuzz-viewer", "viewer", None)):
        user = users.add(name, role, "fuzzing password", address)
        sid = users.open_session(user, 3600, "fuzz")
        CREDENTIALS[f"{role}-session"] = serializer.dumps({"sid": sid})
        CREDENTIALS[f"{role}-token"] = users.new_token(name, "fuzz")[1]
    app.test_client_class = _SignedIn

nasty_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "0", "-1", "1e999", "NaN", "Infinity", "-0", "0x10", "1" * 90, "0.0001", "1,5",
                     "１２", "\x00", "../../etc/passwd", "%00", "<script>", "' OR 1=1 --", "9" * 400]),
    st.integers(min_value=-(2**300), max_value=2**300).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=6).map(str),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**300), max_value=2**300),
              st.floats(allow_nan=False), nasty_text),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(nasty_text, children, max_size=4),
    max_leaves=12)
bid = st.fixed_dictionaries({}, optional={
    "watts": st.one_of(st.integers(min_value=-5, max_value=2**33), nasty_text, json_values),
    "kw": st.one_of(st.decimals(min_value=-1, max_value=5_000_000, places=4).map(float), nasty_text),
    "price_wei_per_kwh": st.one_of(st.integers(min_value=-5, max_value=2**257), nasty_text),
    "extra": json_values,
})
bids_doc = st.one_of(
    st.fixed_dictionaries({"version": st.one_of(st.just(1), json_values), "bids": st.lists(bid, max_size=6)},
                          optional={"source": json_values, "fleet": json_values}),
    json_values,
)


@pytest.fixture(scope="module")
def app_and_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    folder = tmp_path_factory.mktemp("fuzz")
    chain = devchain.start("anvil", accounts=3, log_path=folder / "anvil.log")
    keys = devchain.dev_private_keys(3, "anvil")
    dr = DemandReduction.deploy(Signer.from_key(connect(chain.url), keys[0]))
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k in (
        "RPC_URL", "NETWORK", "CONTRACT_ADDRESS", "UTILITY_ACCOUNT", "CONSUMER_ACCOUNT", "BIDS_FILE",
        "RESULTS_FILE", "STATE_DIR", "DR_ENV_FILE", "DR_ROLE", "UTILITY_PRIVATE_KEY", "CONSUMER_PRIVATE_KEY")}
    app = create_app({
        "TESTING": True, "WTF_CSRF_ENABLED": False, "SECRET_KEY": "fuzz",
        "RPC_URL": chain.url, "CONTRACT_ADDRESS": dr.address,
        "CONSUMER_PRIVATE_KEY": keys[1], "UTILITY_PRIVATE_KEY": keys[0],
        "BIDS_FILE": str(folder / "database" / "bids.json"), "RESULTS_FILE": str(folder / "database" / "results.json"),
        "STATE_DIR": str(folder / "database"), "DR_ENV_FILE": str(folder / "missing.env"),
        "DEPLOYMENTS_FILE": str(folder / "deployments.json"), "POLL_INTERVAL": "0.1",
        "WEB_USERS_DB": str(folder / "web-users.sqlite3"), "DR_ROLE": "auto",
    })
    _sign_in_users(app, folder, Signer.from_key(connect(chain.url), keys[1]).address)
    try:
        yield app, folder / "database" / "bids.json"
    finally:
        from flaskapp.daemon import stop_all

        stop_all()
        chain.stop()
        os.environ.update(saved)


def _check(app_files: tuple[Any, Path], response: Any, what: str) -> None:
    COUNT["requests"] += 1
    _, bids_file = app_files
    assert response.status_code != 500, f"{what} -> 500: {response.get_data(as_text=True)[:500]}"
    assert response.status_code < 500 or response.status_code == 503, f"{what} -> {response.status_code}"
    if bids_file.exists():
        load_bids(bids_file)  # raises BidsError on an invalid file


def _operations() -> list[tuple[str, str, list[dict]]]:
    ops = []
    for path, item in SPEC["paths"].items():
        for method, op in item.items():
            ops.append((method, path, op.get("parameters", [])))
    return ops


OPERATIONS = _operations()


def _value(schema: dict) -> st.SearchStrategy:
    """Schema-valid values mixed with hostile ones."""
    if "enum" in schema:
        valid = st.sampled_from(schema["enum"])
    elif schema.get("type") == "integer":
        valid = st.integers(min_value=schema.get("minimum", -(2**70)), max_value=2**70).map(str)
    elif schema.get("type") == "array":
        return st.lists(nasty_text, max_size=5)
    else:
        valid = st.text(max_size=20)
    return st.one_of(valid, nasty_text)


@st.composite
def api_calls(draw: Any) -> tuple[str, str, dict, Any]:
    method, path, params = draw(st.sampled_from(OPERATIONS))
    query: dict[str, Any] = {}
    for p in params:
        if p["in"] == "header" or (not p.get("required") and draw(st.booleans())):
            continue
        value = draw(_value(p.get("schema", {})))
        if p["in"] == "path":
            # Percent-encoded as a client would: a raw "?" or "#" would end the path
            # (Hypothesis found "?": the test client refused the URL, not the app).
            value = urllib.parse.quote(str(value), safe="") or "0"
            path = path.replace("{" + p["name"] + "}", value)
        else:
            query[p["name"]] = value
    body = draw(bids_doc) if method == "put" else None
    return method, path, query, body


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(call=api_calls(), who=st.sampled_from(["household-session", "operator-token", "household-token",
                                               "viewer-token", "none", "forged-token"]))
def test_every_documented_api_operation(app_and_files: tuple[Any, Path], call: tuple, who: str) -> None:
    app, _ = app_and_files
    method, path, query, body = call
    client = FlaskClient(app)
    kwargs: dict[str, Any] = {"query_string": query, "headers": {}}
    if who.endswith("-session"):
        client.set_cookie(COOKIE, CREDENTIALS[who])
        kwargs["headers"]["X-CSRFToken"] = "unchecked"  # WTF_CSRF_ENABLED is off in this app
    elif who != "none":
        kwargs["headers"]["Authorization"] = "Bearer " + CREDENTIALS.get(who, "drt_forged")
    if body is not None:
        kwargs["data"] = json.dumps(body)
        kwargs["content_type"] = "application/json"
    response = getattr(client, method)(path, **kwargs)
    _check(app_and_files, response, f"{method.upper()} {path} {query} as {who}")
    if path == "/api/health":
        assert response.status_code == 200
    elif who in ("none", "forged-token"):
        # 404: no route matches (e.g. /api/requests/0.5); the routes are public in the spec anyway
        assert response.status_code in (401, 404), f"{method.upper()} {path} without a valid credential"
        assert response.status_code == 401 or app.url_map.bind("").test(path, method.upper()) is False
    else:
        assert response.status_code != 401, f"{method.upper()} {path} as {who}"
        if who.startswith("household") and path.startswith("/api/utility/"):
            assert response.status_code == 403
        if who == "viewer-token" and method != "get":
            assert response.status_code == 403
    if response.status_code == 200 and response.mimetype == "application/json":
        response.get_json()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                      bids_doc.map(lambda v: json.dumps(v).encode())))
def test_put_bids_raw_bodies(app_and_files: tuple[Any, Path], body: bytes) -> None:
    app, bids_file = app_and_files
    before = bids_file.read_bytes() if bids_file.exists() else None
    response = app.test_client().put("/api/bids", data=body, content_type="application/json")
    _check(app_and_files, response, f"PUT /api/bids {body[:80]!r}")
    if response.status_code != 200:
        assert (bids_file.read_bytes() if bids_file.exists() else None) == before  # refused: untouched


row = st.fixed_dictionaries({"kw": nasty_text, "price": nasty_text})


@st.composite
def form_posts(draw: Any) -> tuple[str, dict]:
    kind = draw(st.sampled_from(["bids", "bids-add", "bids-remove", "request", "unlock", "utility-unlock", "fill"]))
    if kind.startswith("bids"):
        rows = draw(st.lists(row, max_size=5))
        data = {f"rows-{i}-{k}": v for i, r in enumerate(rows) for k, v in r.items()}
        data.update({"save": "1"} if kind == "bids" else {"add": "1"} if kind == "bids-add" else {"remove": draw(nasty_text)})
        return "/bids", data
    if kind == "request":
        fields = ["target_kw", "bidding_s", "delay_s", "duration_s", "cap", "budget_eth", "rule"]
        data = {f: draw(nasty_text) for f in fields if draw(st.booleans())}
        data["preview"] = "1"
        return "/utility/requests", data
    if kind == "fill":
        return "/bids/fill", {"fill": "1"}
    return ("/unlock" if kind == "unlock" else "/utility/unlock"), {"password": draw(nasty_text),
                                                                   "next": draw(nasty_text)}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(post=form_posts())
def test_forms(app_and_files: tuple[Any, Path], post: tuple[str, dict]) -> None:
    app, _ = app_and_files
    path, data = post
    response = app.test_client().post(path, data=data)
    _check(app_and_files, response, f"POST {path} {data}")
    if response.status_code in (301, 302, 303):
        assert response.headers["Location"].startswith("/"), response.headers["Location"]  # no open redirect


@pytest.mark.parametrize("value", ["NaN", "sNaN", "Infinity", "-inf", "1e999"])
def test_non_finite_numbers_are_refused_not_a_crash(app_and_files: tuple[Any, Path], value: str) -> None:
    """Found by this file's fuzzing: Decimal parses NaN, Infinity and 1e999, and the bid
    curve and the request form then raised (500) instead of refusing the input."""
    app, _ = app_and_files
    client = app.test_client()
    curve = client.get("/api/bids/curve.svg", query_string={"kw": ["1", value], "price": [value, "1"]})
    _check(app_and_files, curve, f"GET curve.svg {value}")
    assert curve.status_code == 200 and curve.mimetype == "image/svg+xml"
    for field in ("target_kw", "cap", "budget_eth", "bond_eth"):
        data = {"target_kw": "5", "bidding_s": "60", "delay_s": "0", "duration_s": "3600", "cap": "0.0001",
                "rule": "uniform", "preview": "1", field: value}
        page = client.post("/utility/requests", data=data)
        _check(app_and_files, page, f"POST /utility/requests {field}={value}")
        assert page.status_code in (200, 400)  # the form again, with its errors
        if value != "1e999":
            assert "Enter a number." in page.get_data(as_text=True)
    rows = client.post("/bids", data={"rows-0-kw": value, "rows-0-price": "1", "save": "1"})
    _check(app_and_files, rows, f"POST /bids kw={value}")


def test_fuzz_count() -> None:
    """Runs last in this file: the number of fuzzed requests (reported in docs/security.md)."""
    print(f"fuzzed requests: {COUNT['requests']}")
