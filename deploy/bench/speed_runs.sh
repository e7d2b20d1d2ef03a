#!/usr/bin/env bash
# Issue 24's measurements, for a quiet machine (nothing else running; every number it prints is one
# measurement of that machine): run from the repository root.
#
#   deploy/bench/speed_runs.sh OUT_DIR [OLD_REF]        (OLD_REF: the code before, default main)
#   PYTHON=/path/to/python3.10   (default .venv/bin/python)   MNIST_ROOT=DIR (real MNIST IDX files; default:
#   synthetic MNIST-shaped files, python -m saf.deploy.bench.mnist_like)   STEPS=N (timed minibatches, default 5)
#   for a smoke test only: MODEL (default vgg11-cifar), BATCHES (default "8 32"), MNIST_N (default "6000 1000")
#
# 1. saf bench train, VGG-11 CIFAR shape, CPU, T = 6, batch 8 then 32, back to back: OLD, NEW (default) and
#    NEW with --sws recompute (the weight standardization's intermediates recomputed in backward, opt-in), in
#    the order old new rec rec new old (a drift of the machine shows within one side)
# 2. saf bench train --profile (NEW) at batch 8 and 32
# 3. saf bench infer --peers (NEW) on the pinned demo network and on an MNIST-size conv net (conv-mnist,
#    16C3s2-32C3s2-FC128, one epoch on the MNIST files)
# 4. a summary: every ratio old vs new, and OTTT's own time new / old (it must not get slower)
# Each command takes a few minutes on 2 cores; outputs (JSON, text) land in OUT_DIR.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 OUT_DIR [OLD_REF]" >&2; exit 2; }
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
OLD_REF=${2:-main}
PY=${PYTHON:-.venv/bin/python}
STEPS=${STEPS:-5}
MODEL=${MODEL:-vgg11-cifar}
BATCHES=${BATCHES:-8 32}
MNIST_N=${MNIST_N:-6000 1000}
ROOT=$(pwd)
[ -f "$ROOT/deploy/bench/speed_runs.sh" ] || { echo "$0: run it from the repository root" >&2; exit 2; }
rm -rf "$OUT/old" "$OUT/new" && mkdir -p "$OUT/old/saf" "$OUT/new"
git archive "$OLD_REF" | tar -x -C "$OUT/old/saf"
ln -sfn "$ROOT" "$OUT/new/saf"
saf_old() { (cd "$OUT" && PYTHONPATH="$OUT/old" "$PY" -m saf.deploy.main "$@"); }
saf_new() { (cd "$OUT" && PYTHONPATH="$OUT/new" "$PY" -m saf.deploy.main "$@"); }
TRAIN=(bench train --model "$MODEL" --T 6 --methods saf-e,saf-f,ottt-o,ottt-a --compile off --warmup 1 --steps "$STEPS" --quiet)

for B in $BATCHES; do
  for run in old-1 new-1 rec-1 rec-2 new-2 old-2; do
    echo "== bench train, batch $B, $run"
    case $run in
      old-*) saf_old "${TRAIN[@]}" --batch "$B" --out "$OUT/train-b$B-$run.json" > "$OUT/train-b$B-$run.txt" ;;
      new-*) saf_new "${TRAIN[@]}" --batch "$B" --out "$OUT/train-b$B-$run.json" > "$OUT/train-b$B-$run.txt" ;;
      rec-*) saf_new "${TRAIN[@]}" --sws recompute --batch "$B" --out "$OUT/train-b$B-$run.json" > "$OUT/train-b$B-$run.txt" ;;
    esac
    grep -A3 "^pair" "$OUT/train-b$B-$run.txt" | sed -n '1,20p' | grep -E "^(pair|saf-e/ottt-o|saf-f/ottt-a) +6" || true
  done
done

for B in $BATCHES; do
  echo "== bench train --profile, batch $B"
  saf_new bench train --profile --model "$MODEL" --T 6 --batch "$B" --warmup 1 --steps 3 --quiet --out "$OUT/profile-b$B.json" \
    | tee "$OUT/profile-b$B.txt"
done

echo "== bench infer --peers, demo network"
saf_new export "$ROOT/tests/golden/demo/model.safetensors" --target loihi --out "$OUT/demo-bundle" --force > /dev/null
saf_new bench infer "$OUT/demo-bundle" --peers --repeats 5 --out "$OUT/peers-demo.json" | tee "$OUT/peers-demo.txt"

echo "== bench infer --peers, MNIST-size conv net (conv-mnist)"
MR=${MNIST_ROOT:-}
if [ -z "$MR" ]; then
  MR="$OUT/mnist-like"
  (cd "$OUT" && PYTHONPATH="$OUT/new" "$PY" -m saf.deploy.bench.mnist_like "$MR" $MNIST_N)
fi
saf_new train --model conv-mnist --dataset mnist --data-root "$MR" --method saf-e --T 6 --lam 0.5 --epochs 1 \
  --out "$OUT/mnist-run" --force > "$OUT/mnist-train.txt"
saf_new export "$OUT/mnist-run" --target loihi --calibrate-data mnist --data-root "$MR" --out "$OUT/mnist-bundle" \
  --force > "$OUT/mnist-export.txt"
saf_new bench infer "$OUT/mnist-bundle" --peers --data mnist --data-root "$MR" --limit 1000 --repeats 5 \
  --out "$OUT/peers-mnist.json" | tee "$OUT/peers-mnist.txt"

echo "== summary"
"$PY" - "$OUT" $BATCHES <<'EOF'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
for B in map(int, sys.argv[2:]):
    names = ("old-1", "new-1", "rec-1", "rec-2", "new-2", "old-2")
    runs = {r: json.loads((out / f"train-b{B}-{r}.json").read_text()) for r in names}
    print(f"batch {B}, T = 6          " + "  ".join(f"{r:>6s}" for r in runs))
    for pair in ("saf-e/ottt-o", "saf-f/ottt-a"):
        for key in ("time", "memory"):
            print(f"  {pair} {key:6s}  " + "  ".join(f"{runs[r]['ratios']['6'][pair][key]:6.3f}" for r in runs))
    t = {r: {q["method"]: q["time_s"] for q in runs[r]["results"]} for r in runs}
    for m in ("ottt-o", "ottt-a", "saf-e", "saf-f"):
        old = statistics.mean([t["old-1"][m], t["old-2"][m]])
        for side in ("new", "rec"):
            new = statistics.mean([t[f"{side}-1"][m], t[f"{side}-2"][m]])
            print(f"  {m} time {side}/old {new / old:6.3f}  ({old * 1e3:.0f} -> {new * 1e3:.0f} ms)")
for name in ("demo", "mnist"):
    r = json.loads((out / f"peers-{name}.json").read_text())
    print(f"peers, {name}: " + ", ".join(f"{q['peer']} {q['samples_per_s']:.0f}/s (emulator x{q['emulator_speedup']:.2f}, "
                                          f"same pred {q['agree_with_emulator']:.1%})" for q in r["rows"] if q["available"]))
EOF
