#!/usr/bin/env bash
# Score candidate default weights on the held-out tables (docs/training-log.md, entries 12-14).
#
#   bash training/default-run/held_out.sh WEIGHTS.pt OUT_DIR
#
# Run from the repository root with the project installed (README) and ../shared beside
# it. Runs, side by side (one thread each, fp32; about 5 minutes on 2 cores):
#   - `ras2s evaluate` on 128-pixel crops of the three held-out cubes, noise cases noniid,
#     mixture and iid30, methods ras2s (the paper's protocol) and ras2s-denoise (as
#     `ras2s denoise` runs the weights) -> OUT_DIR/crops/ (per_image.csv, table.md);
#   - benchmarks/normalisation.py on the whole cubes, normalise none and clean
#     -> OUT_DIR/whole.jsonl.
# Then: python training/default-run/held_out_tables.py --eval OUT_DIR/crops \
#           --whole OUT_DIR/whole.jsonl --step N --extra-out extra.json
set -euo pipefail

WEIGHTS=${1:?usage: held_out.sh WEIGHTS.pt OUT_DIR}
OUT=${2:?usage: held_out.sh WEIGHTS.pt OUT_DIR}
RAS2S=${RAS2S:-$(command -v ras2s || echo .venv/bin/ras2s)}
PYTHON=${PYTHON:-$(dirname "$RAS2S")/python}
DATA=${RAS2S_SHARED_DATA:-../shared/data}
CUBES=(
    "$DATA/CAVE_cloth/cloth_ms_256.mat"
    "$DATA/SanDiego_AVIRIS_anomaly_crop/sandiego.mat"
    "$DATA/HYDICE_Urban_anomaly_crop/hydice.mat"
)
if [[ -e $OUT ]]; then
    echo "$OUT exists already (normalisation.py appends): choose a new folder" >&2
    exit 1
fi
mkdir -p "$OUT"
"$RAS2S" evaluate "${CUBES[@]/#/--data=}" --crop 128 --cases noniid,mixture,iid30 \
    --methods ras2s,ras2s-denoise --weights "$WEIGHTS" --threads 1 --precision fp32 \
    -o "$OUT/crops" > "$OUT/crops.log" 2>&1 &
CROPS=$!
"$PYTHON" benchmarks/normalisation.py --weights "$WEIGHTS" --hows none,clean \
    --cases noniid,mixture,iid30 "${CUBES[@]/#/--data=}" -o "$OUT/whole.jsonl" \
    > "$OUT/whole.log" 2>&1 &
WHOLE=$!
status=0
wait $CROPS || { echo "ras2s evaluate failed: see $OUT/crops.log" >&2; status=1; }
wait $WHOLE || { echo "normalisation.py failed: see $OUT/whole.log" >&2; status=1; }
exit $status
