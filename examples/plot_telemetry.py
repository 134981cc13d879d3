#!/usr/bin/env python
"""Plot gradient-conflict telemetry of a run (trained with gradient_telemetry: true) into a PNG.

python examples/plot_telemetry.py outputs/t3_pcgrad --output outputs/t3_pcgrad/conflicts.png
"""

import argparse
import json
import sys

from mtbert_research.plots import conflict_summary, load_log_history, plot_gradient_telemetry


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run folder, checkpoint folder or trainer_state.json")
    parser.add_argument("--output", default=None, help="PNG path (default: <run>/gradient_conflicts.png)")
    args = parser.parse_args(argv)
    try:
        history = load_log_history(args.run)
        output = args.output or f"{args.run.rstrip('/')}/gradient_conflicts.png"
        plot_gradient_telemetry(history, output)
    except (FileNotFoundError, ValueError) as error:
        print(f"plot_telemetry: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps(conflict_summary(history), indent=2))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
