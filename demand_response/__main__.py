"""``python -m demand_response`` runs the ``dr`` command line."""

import sys

from .cli import main

sys.exit(main())
