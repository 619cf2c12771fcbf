#!/usr/bin/env bash
# Continue the default-weights run (docs/training.md) on this machine.
#
#   bash training/default-run/continue.sh [THREADS]     # start or continue, in the background
#   bash training/default-run/continue.sh --save        # copy the newest checkpoint back
#   bash training/default-run/continue.sh --cooldown N [THREADS [CKPT]]   # branch a cooldown
#
# Run from the repository root with the project installed (README) and ../shared beside
# it. The first form lays out the sources and cuts the patch store where they are missing
# (both deterministic: 64-band windows of the cubes with at least 64 bands, the CAVE test
# cubes and cloth left out, San Diego and HYDICE for validation), copies the committed
# checkpoint into the run folder unless that folder holds a newer one, and starts
# `ras2s train --resume` with config.yaml (run 3: 31-64 band crops and intensity
# augmentation) at nice 19, logging to $RUN/train.log. The run writes
# $RUN/checkpoints/last.ckpt every 100 steps. The second form copies that file back to
# training/default-run/last.ckpt, to be committed. The third branches the run at its
# newest checkpoint (or CKPT; step S) into $WORK/cool-S-N and trains that copy N more
# steps with the learning rate falling linearly to 0 from the run's rate at step S (1e-3
# to step 30,000, 5e-4 from there: docs/training-log.md entry 23; lr_cooldown_steps,
# docs/training.md; the config's step milestones, which lie at fractions of max_steps,
# are switched off so that the shorter max_steps does not trigger them), for weights to
# export; the run itself goes on unchanged. With RAS2S_MIX=P set (below) either form also
# mixes in the 31-band CAVE cubes the b64 store leaves out; the branch goes to
# $WORK/cool-S-N-mixP. With RAS2S_BRANCH_SET="key=value ..." the cooldown also overrides
# those config fields (a recipe lever measured on a branch, e.g.
# RAS2S_BRANCH_SET="intensity_scale=[0.6,4.0]"); the branch goes to
# $WORK/cool-S-N-$RAS2S_BRANCH_TAG (the tag is required with it).
set -euo pipefail

WORK=${RAS2S_TRAIN_DIR:-/tmp/ras2s_train}
RUN=$WORK/run3
HERE=training/default-run
RAS2S=${RAS2S:-$(command -v ras2s || echo .venv/bin/ras2s)}
PYTHON=${PYTHON:-$(dirname "$RAS2S")/python}

# checkpoint_value CKPT EXPR: EXPR of the loaded checkpoint `c`
checkpoint_value() {
    "$PYTHON" -c "import sys, torch; c = torch.load(sys.argv[1], weights_only=True); print($2)" "$1"
}
step_of() { checkpoint_value "$1" "c['global_step']"; }
rate_of() { checkpoint_value "$1" "c['optimizer_states'][0]['param_groups'][0]['lr']"; }

if [[ ${1:-} == --save ]]; then
    cp "$RUN/checkpoints/last.ckpt" "$HERE/last.ckpt"
    echo "copied step $(step_of "$HERE/last.ckpt") to $HERE/last.ckpt"
    exit 0
fi
prepare_store() {
    if [[ ! -d $WORK/src ]]; then
        "$PYTHON" training/prepare_sources.py --data ../shared/data --out "$WORK/src"
    fi
    if [[ ! -f $WORK/b64/manifest.json ]]; then
        "$RAS2S" prepare "$WORK/src" -o "$WORK/b64" --crop 256 --patch 32 \
            --scales 1,0.5,0.25 --strides 16,16,16 --patch-bands 64 --band-rule window \
            --exclude testMSI_1,testMSI_2,testMSI_3,chart_and_stuffed_toy_ms_256,cloth_ms_256 \
            --val-list sandiego,hydice --seed 0
    fi
    if [[ $MIX != 0 && ! -f $WORK/c31/manifest.json ]]; then # 31-band CAVE cubes (--mix)
        mkdir -p "$WORK/src31"
        for cube in testMSI_1 testMSI_2 testMSI_3 chart_and_stuffed_toy_ms_256; do
            ln -sfn "$(readlink -f "$WORK/src/$cube.mat")" "$WORK/src31/$cube.mat"
        done
        "$RAS2S" prepare "$WORK/src31" -o "$WORK/c31" --crop 256 --patch 32 \
            --scales 1,0.5,0.25 --strides 16,16,16 --patch-bands 31 --seed 0
    fi
}

# RAS2S_MIX=P: a training batch comes from the 31-band CAVE store with probability P (the
# lever of docs/training-log.md entry 16; 0, the default: never), with gradient-norm
# clipping at 1.0 (without it the mixed branch diverged)
MIX=${RAS2S_MIX:-0}
MIX_ARGS=()
if [[ $MIX != 0 ]]; then
    MIX_ARGS=(--mix "$WORK/c31=$MIX" --set grad_clip=1.0)
fi

if [[ ${1:-} == --cooldown ]]; then
    STEPS=${2:?--cooldown needs the number of steps}
    THREADS=${3:-1}
    FROM=${4:-$RUN/checkpoints/last.ckpt}
    STEP=$(step_of "$FROM")
    COOL=$WORK/cool-$STEP-$STEPS
    if [[ $MIX != 0 ]]; then
        COOL=$COOL-mix$MIX
    fi
    BRANCH_ARGS=()
    if [[ -n ${RAS2S_BRANCH_SET:-} ]]; then
        COOL=$COOL-${RAS2S_BRANCH_TAG:?RAS2S_BRANCH_SET needs RAS2S_BRANCH_TAG (the folder suffix)}
        for field in $RAS2S_BRANCH_SET; do
            BRANCH_ARGS+=(--set "$field")
        done
    fi
    if [[ -e $COOL ]]; then
        echo "$COOL exists already" >&2
        exit 1
    fi
    mkdir -p "$COOL/checkpoints"
    cp "$FROM" "$COOL/checkpoints/last.ckpt"
    if [[ $(step_of "$COOL/checkpoints/last.ckpt") != "$STEP" ]]; then
        echo "the checkpoint changed while it was copied; run again" >&2
        rm -r "$COOL"
        exit 1
    fi
    RATE=$(rate_of "$FROM")
    prepare_store
    echo "cooldown from step $STEP to $((STEP + STEPS)), lr $RATE to 0, with $THREADS thread(s); log: $COOL/train.log"
    nohup nice -n 19 "$RAS2S" train --patches "$WORK/b64" "${MIX_ARGS[@]}" --config "$HERE/config.yaml" -o "$COOL" \
        --resume --set "threads=$THREADS" --set "max_steps=$((STEP + STEPS))" --set "lr=$RATE" \
        --set "lr_cooldown_steps=$STEPS" --set "lr_milestones=[]" --set "lr_factors=[]" \
        "${BRANCH_ARGS[@]}" >>"$COOL/train.log" 2>&1 &
    exit 0
fi
THREADS=${1:-1}

prepare_store
mkdir -p "$RUN/checkpoints"
if [[ ! -f $RUN/checkpoints/last.ckpt ]] ||
    (($(step_of "$HERE/last.ckpt") > $(step_of "$RUN/checkpoints/last.ckpt"))); then
    cp "$HERE/last.ckpt" "$RUN/checkpoints/last.ckpt"
fi
echo "continuing from step $(step_of "$RUN/checkpoints/last.ckpt") with $THREADS thread(s); log: $RUN/train.log"
nohup nice -n 19 "$RAS2S" train --patches "$WORK/b64" "${MIX_ARGS[@]}" --config "$HERE/config.yaml" -o "$RUN" \
    --resume --set "threads=$THREADS" >>"$RUN/train.log" 2>&1 &
