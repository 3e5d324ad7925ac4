#!/usr/bin/env bash
# The main job from a fresh clone: install, train on the built-in synthetic aerial scenes, render a fresh
# synthetic test set, detect on it with infer.py and evaluate the detections with eval.pascalvoc.
#   bash tools/quickstart.sh            (RUN=name SEED=n to change the run)
set -euo pipefail
cd "$(dirname "$0")/.."
run="${RUN:-quickstart}"
seed="${SEED:-167}"
test_dir="runs/$run/synthetic_test"

python3 -m venv .venv
.venv/bin/pip install -q -r requirements.txt
.venv/bin/pip install -q --no-deps -r requirements-nodeps.txt
SECONDS=0
if [ -f "runs/$run/last.pt" ]; then
  .venv/bin/python train.py "$run" "$seed" --resume   # continues a killed run; a finished run ends at once
else
  .venv/bin/python train.py "$run" "$seed"
fi
echo "training took $((SECONDS / 60)) min $((SECONDS % 60)) s"
.venv/bin/python tools/make_synthetic.py "$test_dir" --n 20 --seed 1000 --split test --quiet
ckpt="$(ls -1 "runs/$run"/best-checkpoint-*epoch.pt | tail -n 1)"
.venv/bin/python infer.py "$test_dir/images" -1 "$ckpt" obb --out "$test_dir/detections" --draw
.venv/bin/python -m eval.pascalvoc -gt "$test_dir/labels" -det "$test_dir/detections" \
  -gtformat obb_json -detformat obb_json -sp "$test_dir/eval"
echo "run folder: runs/$run  (checkpoint $ckpt; detections, drawings and eval tables in $test_dir)"
