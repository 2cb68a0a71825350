"""Make a reduction request (interactive prompts, as the seed did), then settle it at its
deadline and withdraw the refund.

    brownie run scripts/utility.py [main remote]
    python scripts/utility.py [remote]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from demand_response.scripting import run_cli  # noqa: E402


def main(mode: str = "local") -> None:
    """Request, then run the utility daemon until the request is settled."""
    run_cli(["utility", "request"], mode)
    run_cli(["utility", "run", "--exit-when-idle"], mode)


if __name__ == "__main__":
    main(*sys.argv[1:2])
