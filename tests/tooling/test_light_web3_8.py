"""The consumer's light install on web3 8 (``make light-web3-8``): in a throwaway venv with
only ``web3==8.0.0`` and python-dotenv (no brownie, no prometheus-client), a consumer service
on a ``ws://`` anvil subscribes and bids on a request. Skipped unless ``DR_WEB3_8_PYTHON``
names that venv's python: the shared venv keeps brownie's web3 7.16.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from daemon_helpers import ROOT

pytestmark = pytest.mark.slow

PYTHON = os.environ.get("DR_WEB3_8_PYTHON")

CHECK = '"""Light install on web3 8: a consumer daemon on a ws:// anvil bids on a request, by push."""\nimport sys, threading, time, json\nfrom pathlib import Path\nimport web3\nfrom demand_response import devchain\nfrom demand_response.bids import save_bids\nfrom demand_response.chain import Signer, connect\nfrom demand_response.config import load_settings\nfrom demand_response.consumer import AgentSpec, ConsumerService, file_bids\nfrom demand_response.results import ResultsFile\nfrom demand_response.utility import deploy, plan_request, send_request\n\nfolder = Path(sys.argv[1])\nprint("web3", web3.__version__)\nwith devchain.start("anvil", accounts=3, block_time=1, log_path=folder / "anvil.log") as node:\n    w3 = connect(f"ws://127.0.0.1:{node.port}")\n    settings = load_settings(folder / ".env", environ={}, rpc_url=node.url, deployments_file=folder / "d.json")\n    keys = devchain.dev_private_keys(3, "anvil")\n    dr = deploy(settings, Signer.from_key(w3, keys[0]), node.chain_id)\n    start = w3.eth.block_number\n    save_bids(folder / "bids.json", [(1000, 10 * 10**14)])\n    consumer = Signer.from_key(w3, keys[1], label="c")\n    service = ConsumerService(dr, node.chain_id, [AgentSpec(consumer, file_bids(folder / "bids.json"), "c")],\n                              state_path=folder / "state.json", results=ResultsFile(folder / "results.json"),\n                              start_block=start, poll_interval=30.0)\n    stop = threading.Event()\n    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)\n    thread.start()\n    deadline = time.monotonic() + 30\n    while not (service.poller.push and service.poller.push.live) and time.monotonic() < deadline:\n        time.sleep(0.1)\n    now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))\n    rid, receipt = send_request(dr, Signer.from_key(w3, keys[0]), plan_request(\n        target_kw=3.0, now=now, bidding_window_s=60, event_duration_s=3600, max_price_wei_per_kwh=128 * 10**14))\n    while not dr.bids_of(rid, consumer.address) and time.monotonic() < deadline + 30:\n        time.sleep(0.2)\n    stop.set(); thread.join(15)\n    bids = dr.bids_of(rid, consumer.address)\n    print(json.dumps({"web3": web3.__version__, "push": True, "bids": len(bids), "request_block": receipt["blockNumber"]}))\n    assert len(bids) == 1\n'


@pytest.mark.skipif(not PYTHON, reason="DR_WEB3_8_PYTHON is not set (make light-web3-8 builds the venv)")
def test_a_consumer_on_web3_8_bids_over_a_websocket_by_push(tmp_path: Path) -> None:
    (tmp_path / "check.py").write_text(CHECK, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([str(PYTHON), str(tmp_path / "check.py"), str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=180, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["web3"].startswith("8.") and result["bids"] == 1
