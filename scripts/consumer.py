"""Run the consumer bidding daemon until Ctrl-C (bids from database/bids.json).

    brownie run scripts/consumer.py [main remote]
    python scripts/consumer.py [remote]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from demand_response.scripting import run_cli  # noqa: E402


def main(mode: str = "local") -> None:
    """Listen for requests and bid (``mode='remote'`` insists on the .env keystore account)."""
    run_cli(["consumer", "run"], mode)


if __name__ == "__main__":
    main(*sys.argv[1:2])
