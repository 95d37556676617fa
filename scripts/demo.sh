#!/usr/bin/env bash
# The main job on the embedded default (run by `make demo`): generate the synthetic world's probe
# sets, collect head statistics of the shipped organism CLIP and rank its heads.
set -euo pipefail
WORK=${WORK:-runs/demo}
MODEL=(--model ccsclip-organism --pretrained embedded)

echo "== 1. the synthetic concept world: probes, bias probe, gallery, calibration images, pool"
ccsclip organism generate --out "$WORK/world" > "$WORK.world.json" 2>/dev/null || ccsclip organism generate --out "$WORK/world" >/dev/null
echo "== 2. head statistics (moments of direct effects, ablation means) on calibration images"
ccsclip stats "${MODEL[@]}" --images "$WORK/world/calibration" --layers all --out "$WORK/stats"
echo "== 3. heads ranked by direct-effect variance"
ccsclip heads "$WORK/stats" --top 16
