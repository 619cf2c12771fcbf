#!/usr/bin/env bash
# Continue the default-weights run (docs/training.md, section 4b) on this machine.
#
#   bash training/default-run/continue.sh [THREADS]     # start or continue, in the background
#   bash training/default-run/continue.sh --save        # copy the newest checkpoint back
#
# Run from the repository root with the project installed (README) and ../shared beside
# it. The first form lays out the sources and cuts the patch store where they are missing
# (both deterministic), copies the committed checkpoint into the run folder unless that
# folder holds a newer one, and starts `ras2s train --resume` at nice 19, logging to
# $RUN/train.log. The run writes $RUN/checkpoints/last.ckpt every 100 steps. The second
# form copies that file back to training/default-run/last.ckpt, to be committed.
set -euo pipefail

WORK=${RAS2S_TRAIN_DIR:-/tmp/ras2s_train}
RUN=$WORK/run
HERE=training/default-run
RAS2S=${RAS2S:-$(command -v ras2s || echo .venv/bin/ras2s)}
PYTHON=${PYTHON:-$(dirname "$RAS2S")/python}

step_of() {
    "$PYTHON" -c "import sys, torch; print(torch.load(sys.argv[1], weights_only=True)['global_step'])" "$1"
}

if [[ ${1:-} == --save ]]; then
    cp "$RUN/checkpoints/last.ckpt" "$HERE/last.ckpt"
    echo "copied step $(step_of "$HERE/last.ckpt") to $HERE/last.ckpt"
    exit 0
fi
THREADS=${1:-1}

if [[ ! -f $WORK/p32/manifest.json ]]; then
    "$PYTHON" training/prepare_sources.py --data ../shared/data --out "$WORK/src"
    "$RAS2S" prepare "$WORK/src" -o "$WORK/p32" --crop 256 --patch 32 \
        --scales 1,0.5,0.25 --strides 16,16,16 --patch-bands 31 --band-rule window \
        --val-list cloth_ms_256,sandiego,hydice --seed 0
fi
mkdir -p "$RUN/checkpoints"
if [[ ! -f $RUN/checkpoints/last.ckpt ]] ||
    (($(step_of "$HERE/last.ckpt") > $(step_of "$RUN/checkpoints/last.ckpt"))); then
    cp "$HERE/last.ckpt" "$RUN/checkpoints/last.ckpt"
fi
echo "continuing from step $(step_of "$RUN/checkpoints/last.ckpt") with $THREADS thread(s); log: $RUN/train.log"
nohup nice -n 19 "$RAS2S" train --patches "$WORK/p32" --config "$HERE/config.yaml" -o "$RUN" \
    --resume --set "threads=$THREADS" >>"$RUN/train.log" 2>&1 &
