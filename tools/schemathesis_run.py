#!/usr/bin/env python3
"""schemathesis against the running web app, with sign-in on (``make fuzz``; ``make audit`` runs it).

    .venv/bin/python tools/schemathesis_run.py              # ~1-2 minutes
    FUZZ_EXAMPLES=500 .venv/bin/python tools/schemathesis_run.py   # the long run

What it does, all on loopback and removed afterwards:

1. an anvil with the contract deployed and one open request (so the paths with a request id
   have something to find);
2. the web app as deployed: ``run_flask.sh`` (gunicorn, two workers, ``DR_ROLE=both``) with a
   users database made by the commands a utility runs: ``dr web user add`` for an operator
   and a household bound to the console's account, ``dr web user token`` for each;
3. ``schemathesis run`` on the app's own ``/static/openapi.json``, every check, once with the
   operator's token (every read, the utility's preview) and once with the household's
   (its console's reads and ``PUT /api/bids``), ``FUZZ_EXAMPLES`` examples per operation
   (default 25), every check but those tools/schemathesis.toml turns off with its reason, a fixed seed (``FUZZ_SEED``) so a finding reproduces.

schemathesis is not a dependency of the package: it needs a newer hypothesis than brownie's
pin, so it lives in its own venv (``FUZZ_VENV``, default ``.venv-fuzz``, made by ``make fuzz``
with the pinned ``SCHEMATHESIS_VERSION``). Reports (JUnit and the failing cases as pytest code)
go to ``FUZZ_REPORT_DIR`` (default ``build/fuzz``). Exit status: schemathesis's (0 when every
check passed), 2 when the app or the chain cannot start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demand_response import devchain  # noqa: E402
from demand_response.chain import Signer, connect  # noqa: E402
from demand_response.config import KEYS  # noqa: E402
from demand_response.contract import DemandReduction  # noqa: E402
from flaskapp.config import APP_KEYS  # noqa: E402

PASSWORD = "schemathesis fuzzing password"  # a throwaway users database, removed after the run
#: Operations a household may not call and an operator may not write: each token fuzzes its own.
OPERATOR_SKIPS = ["--exclude-method", "PUT"]
HOUSEHOLD_SKIPS = ["--exclude-path-regex", "^/api/utility/"]


def _dr(args: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "demand_response", *args], env=env, cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"`dr {' '.join(args)}` failed: {done.stderr.strip()}")
    return done.stdout


def _wait(url: str, server: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(2)
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(2)


def main() -> int:
    """Start the chain and the app, run schemathesis twice, stop everything."""
    venv = (ROOT / (os.environ.get("FUZZ_VENV") or ".venv-fuzz")).resolve()  # relative to the checkout: the runs use another cwd
    tool = venv / "bin" / "schemathesis"
    if not tool.exists():
        print(f"schemathesis is not installed in {venv}: run `make fuzz`", file=sys.stderr)
        return 2
    examples = os.environ.get("FUZZ_EXAMPLES", "25")
    reports = Path(os.environ.get("FUZZ_REPORT_DIR") or ROOT / "build" / "fuzz")
    reports.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dr-fuzz-"))
    node = devchain.start("anvil", accounts=3, chain_id=31337, log_path=work / "anvil.log")
    server = None
    try:
        w3 = connect(node.url)
        utility, household = w3.eth.accounts[0], w3.eth.accounts[1]
        dr = DemandReduction.deploy(Signer(w3, utility))
        now = int(w3.eth.get_block("latest")["timestamp"])
        dr.request_reduction(Signer(w3, utility), 5_000, now + 4000, now + 8000, now + 3600, 128 * 10**12)
        (work / ".env").write_text(f"RPC_URL={node.url}\nCONTRACT_ADDRESS={dr.address}\nSTATE_DIR={work}\n"
                                   "DR_ROLE=both\n"  # a dev chain: the node's accounts 0 and 1
                                   f"BIDS_FILE={work / 'bids.json'}\nRESULTS_FILE={work / 'results.json'}\n")
        port = devchain.free_port()
        # none of the caller's settings (its users database, state, keys): only this run's .env
        mine = set(KEYS) | set(APP_KEYS) | {"DR_ENV_FILE", "PROMETHEUS_MULTIPROC_DIR", "METRICS_TOKEN"}
        env = {k: v for k, v in os.environ.items() if k not in mine and not k.startswith("WEB_")}
        env.update(DR_ENV_FILE=str(work / ".env"), PYTHONPATH=str(ROOT), FLASK_RUN_PORT=str(port),
                   WEB_USERS_DB=str(work / "users.sqlite3"),
                   WEB_WORKERS="2", FLASK_SECRET_KEY="fuzzing-only", WEB_LOGIN_MAX_CLIENT_FAILURES="100000")
        tokens = {}
        for name, role, extra in (("ops", "operator", []), ("home", "household", ["--address", household])):
            _dr(["web", "user", "add", name, "--role", role, "--password-file", "-", *extra], env, PASSWORD + "\n")
            tokens[role] = _dr(["web", "user", "token", name, "--label", "schemathesis"], env).strip()
        server = subprocess.Popen([str(ROOT / "run_flask.sh")], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                  stdout=open(work / "web.log", "wb"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        _wait(url + "/api/health", server)
        status = 0
        for role, skips in (("operator", OPERATOR_SKIPS), ("household", HOUSEHOLD_SKIPS)):
            print(f"==> schemathesis as the {role} ({examples} examples per operation)", flush=True)
            # one worker: with two, hypothesis's lambda descriptions (ast parsing on threads) failed
            # once with "AST constructor recursion depth mismatch", an error of the tool, not of the app
            run = [str(tool), "--config-file", str(ROOT / "tools" / "schemathesis.toml"), "run", f"{url}/static/openapi.json", "--url", url, "--max-examples", examples,
                   "--seed", os.environ.get("FUZZ_SEED", "19"), "--workers", "1", "--no-color",
                   "--generation-database", "none", "--request-timeout", "30",
                   *skips,
                   "--report", "junit,pytest", "--report-junit-path", str(reports / f"{role}.xml"),
                   "--report-pytest-path", str(reports / f"{role}_failures.py")]
            # the token through the spec's bearerAuth (tools/schemathesis.toml), not a fixed header: the
            # ignored_auth check can then send the request without it or with a forged one
            status = max(status, subprocess.run(run, cwd=work, env=dict(env, DR_FUZZ_TOKEN=tokens[role])).returncode)
        return status
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
        node.stop()
        log = (work / "web.log").read_text(errors="replace") if (work / "web.log").exists() else ""
        if "Traceback" in log:
            print("the web app logged a traceback:\n" + log[log.index("Traceback"):][:4000], file=sys.stderr)
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    sys.exit(main())
