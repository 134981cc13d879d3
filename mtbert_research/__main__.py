"""``python -m mtbert_research table1 --seeds 1 2``: the same command line as ``examples/run_experiments.py``."""

import sys

from .cli import main

sys.exit(main())
