#!/usr/bin/env python
"""Rerun the paper's Tables 1, 2, 3 and 5 over several seeds; tabulate mean ± std as Markdown, CSV and a chart.

    python examples/run_experiments.py table1 --seeds 1 2 3                 # fast CPU profile (not the paper's)
    python examples/run_experiments.py all --profile paper --seeds 1 2      # the configs exactly as written
    python examples/run_experiments.py table2 --override learning_rate=5e-5 --runs_dir runs/lr5e-5
    python examples/run_experiments.py examples/configs/paper/t3_pcgrad.yaml --seeds 7
    python examples/run_experiments.py all --collect_only                   # rebuild the tables from finished runs

Each (config, seed) trains in its own process into <runs_dir>/<profile>/<config stem>/seed<S>/ (log: train.log);
folders that already hold metrics.json are skipped, so rerunning the same command resumes an interrupted sweep.
Tables go to <runs_dir>/<profile>/<table>.md / .csv / .png. `--help` lists every option and the fast profile's
overrides; mtbert_research/profiles.py documents why each was chosen. The same command line, from any
folder: python -m mtbert_research ... --config_dir <configs> --train_script <train.py>.
"""

import sys
from pathlib import Path

from mtbert_research.cli import main

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    sys.exit(main(train_script=here / "train.py", config_dir=here / "configs"))
