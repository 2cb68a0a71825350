"""Deploy the DemandReduction contract as the utility and record its address.

    brownie run scripts/deploy.py [main remote]      # brownie's network
    python scripts/deploy.py [remote]                # .env / RPC_URL
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from demand_response.scripting import run_cli  # noqa: E402


def main(mode: str = "local") -> None:
    """Deploy (``mode='remote'`` insists on the .env keystore account)."""
    run_cli(["deploy"], mode)


if __name__ == "__main__":
    main(*sys.argv[1:2])
