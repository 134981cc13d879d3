#!/usr/bin/env bash
# A screenshot of TensorBoard's scalars dashboard for a run's event files, taken by headless Chromium (the picture
# in docs/concepts/strategies.md was made this way, from a 400-step quickstart_tensorboard.yaml run on 2 CPU cores):
#   python examples/train.py examples/configs/quickstart_tensorboard.yaml --max_steps 400 --eval_steps 100 \
#       --output_dir runs/tb_shot --do_predict false
#   bash examples/tensorboard_screenshot.sh runs/tb_shot/runs curves.png 'train/(loss_|learning_rate_|grad_)'
# Needs `pip install 'mtbert[tracking]'` and a Chromium (Debian: apt-get install chromium).
set -euo pipefail
LOGDIR=${1:?the run\'s TensorBoard folder (output_dir/runs)}; OUT=${2:-tensorboard_curves.png}; FILTER=${3:-}
PORT=${PORT:-6006}
tensorboard --logdir "$LOGDIR" --port "$PORT" > /dev/null 2>&1 &
BOARD=$!
trap 'kill $BOARD 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do curl -s "localhost:$PORT" > /dev/null && break; sleep 1; done
ENCODED=$(python -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$FILTER")
chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1600,1400 \
  --virtual-time-budget=20000 --screenshot="$OUT" "http://localhost:$PORT/?darkMode=false#scalars&tagFilter=$ENCODED" \
  2> /dev/null
echo "wrote $OUT"
