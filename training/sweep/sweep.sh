#!/usr/bin/env bash
# Run on a lent GPU machine from the repository root, with the pack from training/sweep/pack.py
# carried as .devdata:  bash .devdata/sweep.sh   (OUT is the folder that comes back)
# Runs the candidates ONE AT A TIME: six trainers sharing one GPU and 16 cores ran at ~30 img/s
# each (CPU threads oversubscribed), one alone at ~2,000 img/s (H200, lite0 224, batch 64).
set -u
PACK=${PACK:-.devdata}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:$PWD/functions:$PWD/$PACK/site" BINCOUNT_MALLOC_TUNING=0
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
RUNS=/tmp/runs; mkdir -p $RUNS
LIMIT=${LIMIT:-120}   # seconds per candidate
EXTRA=${EXTRA:-}
t0=$(date +%s)
python3 $PACK/expand.py $PACK/photos /tmp/abid || exit 1
python3 -m training.data --count-folder /tmp/abid --out /tmp/prep --workers 16 > $RUNS/prep.log 2>&1 || { tail -20 $RUNS/prep.log; exit 1; }
run() {  # name, then train.py flags
  local name=$1; shift
  timeout $LIMIT python3 -m training.train --data /tmp/prep --out $RUNS/$name --work-dir /tmp/work \
    --batch-size 64 "$@" $EXTRA > $RUNS/$name.log 2>&1
  echo "$name exit=$? at $(( $(date +%s) - t0 )) s: $(grep '^result' $RUNS/$name.log | cut -c1-160)"
}
run l0-224-gauss   --arch efficientnet_lite0 --image-size 224 --loss gaussian --sampler balanced --epochs 15
run l0-320-gauss   --arch efficientnet_lite0 --image-size 320 --loss gaussian --sampler balanced --epochs 15
run l2-260-gauss   --arch efficientnet_lite2 --image-size 260 --loss gaussian --sampler balanced --epochs 15
run l2-352-gauss   --arch efficientnet_lite2 --image-size 352 --loss gaussian --sampler balanced --epochs 15
run l0-224-frozen  --arch efficientnet_lite0 --image-size 224 --freeze-backbone --lr 3e-3 --epochs 10
run l0-224-smooth  --arch efficientnet_lite0 --image-size 224 --loss smooth --sampler balanced --epochs 15
python3 $PACK/collect.py $RUNS /tmp/prep "$OUT"
echo "total $(( $(date +%s) - t0 )) s"
