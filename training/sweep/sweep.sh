#!/usr/bin/env bash
# Run on a lent GPU machine from the repository root, with the pack from training/sweep/pack.py
# carried as .devdata:  bash .devdata/sweep.sh   (OUT is the folder that comes back)
# Runs the candidates ONE AT A TIME: six trainers sharing one GPU and 16 cores ran at ~30 img/s
# each (CPU threads oversubscribed), one alone at ~2,000 img/s (H200, lite0 224, batch 64).
# DEADLINE (seconds from the start) bounds the whole sweep: a candidate gets what is left, later
# ones are skipped, and collect.py always runs, so a lease never ends with nothing to show.
set -u
PACK=${PACK:-.devdata}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:$PWD/functions:$PWD/$PACK/site" BINCOUNT_MALLOC_TUNING=0
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
RUNS=/tmp/runs; mkdir -p $RUNS
DEADLINE=${DEADLINE:-450}
EXTRA=${EXTRA:-}
t0=$(date +%s)
python3 $PACK/expand.py $PACK/photos /tmp/abid || exit 1
python3 -m training.data --count-folder /tmp/abid --out /tmp/prep --workers 16 > $RUNS/prep.log 2>&1 || { tail -20 $RUNS/prep.log; exit 1; }
echo "prepared in $(( $(date +%s) - t0 )) s"
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader 2>/dev/null
run() {  # name, then train.py flags
  local name=$1; shift
  local left=$(( DEADLINE - ($(date +%s) - t0) ))
  if [ $left -lt 40 ]; then echo "$name skipped: ${left} s left"; return; fi
  timeout $left python3 -m training.train --data /tmp/prep --out $RUNS/$name --work-dir /tmp/work \
    --batch-size 64 "$@" $EXTRA > $RUNS/$name.log 2>&1
  echo "$name exit=$? at $(( $(date +%s) - t0 )) s: $(grep '^result' $RUNS/$name.log | cut -c8-130)"
}
COMMON="--loss gaussian --sampler balanced --patience 6"
run l0-224-ema      --arch efficientnet_lite0 --image-size 224 $COMMON --epochs 20 --ema 0.995
run l2-260-ema      --arch efficientnet_lite2 --image-size 260 $COMMON --epochs 20 --ema 0.995
run l0-224-plain    --arch efficientnet_lite0 --image-size 224 --loss gaussian --sampler balanced --patience 3 --epochs 12
run l1-240-ema      --arch efficientnet_lite1 --image-size 240 $COMMON --epochs 20 --ema 0.995
run l0-224-strong   --arch efficientnet_lite0 --image-size 224 $COMMON --epochs 20 --ema 0.995 --augment-preset strong
run l0-288-ema      --arch efficientnet_lite0 --image-size 288 $COMMON --epochs 20 --ema 0.995
run l0-224-ema-s1   --arch efficientnet_lite0 --image-size 224 $COMMON --epochs 20 --ema 0.995 --seed 1
run l2-260-ema-s1   --arch efficientnet_lite2 --image-size 260 $COMMON --epochs 20 --ema 0.995 --seed 1
run l0-224-ema-s2   --arch efficientnet_lite0 --image-size 224 $COMMON --epochs 20 --ema 0.995 --seed 2
python3 $PACK/collect.py $RUNS /tmp/prep "$OUT"
echo "total $(( $(date +%s) - t0 )) s"
