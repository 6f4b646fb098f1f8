"""``python -m pathwatch.cli``: the ``pathwatch`` command (benchmarks and tests start workers so)."""

import sys

from pathwatch.cli import main

sys.exit(main())
