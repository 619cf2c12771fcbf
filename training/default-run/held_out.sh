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
#     -> OUT_DIR/whole.jsonl;
# then the stability gate: `ras2s denoise --strict` (the README's command, no fallback)
# on every whole raw cube of ../shared/data, as tests/test_real_cubes.py runs the shipped
# default -> OUT_DIR/stability/ and OUT_DIR/stability.log; a divergence fails the script
# (weights that pass the tables can still diverge on a cube beyond [0, 1]: entry 19),
# and OUT_DIR/headroom.log: how far beyond [0, 1] they hold on the ABU urban cubes.
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

# The stability gate: the files and the Samson key of tests/test_real_cubes.py.
mapfile -t RAW < <(find "$DATA" -name '*.mat' ! -name 'jasperRidge2_R198.mat' ! -name 'Samson.mat' | sort)
SAMSON=$(find "$DATA" -name 'Samson.mat' | head -n 1)
mkdir -p "$OUT/stability"
gate=0
"$RAS2S" denoise "${RAW[@]}" -o "$OUT/stability" --weights "$WEIGHTS" --strict -q \
    > "$OUT/stability.log" 2>&1 || gate=1
if [[ -n $SAMSON ]]; then
    "$RAS2S" denoise "$SAMSON" --key SamSon -o "$OUT/stability" --weights "$WEIGHTS" \
        --strict -q >> "$OUT/stability.log" 2>&1 || gate=1
fi
# The headroom (information, not a gate): the ceiling up to which the weights hold on the
# two ABU urban cubes that reach furthest beyond [0, 1] (benchmarks/headroom.py)
"$PYTHON" benchmarks/headroom.py --weights "$WEIGHTS" --ceilings 2,3,4,6 \
    --data "$DATA/ABU/abu-urban-2.mat" --data "$DATA/ABU/abu-urban-4.mat" \
    > "$OUT/headroom.log" 2>&1 || echo "headroom.py failed: see $OUT/headroom.log" >&2
tail -n 3 "$OUT/headroom.log" >&2
if ((gate)); then
    echo "stability gate failed (ras2s denoise --strict on the raw cubes of $DATA):" >&2
    grep 'error' "$OUT/stability.log" >&2
    status=1
else
    echo "stability gate passed: ${#RAW[@]} raw cubes${SAMSON:+ and Samson}, no divergence" >&2
fi
exit $status
