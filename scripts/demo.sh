#!/usr/bin/env bash
# The main job on the embedded default (run by `make demo`): the whole pipeline, ending in serving.
#   1. generate the synthetic world's files (probes, bias probe, gallery, calibration images, pool)
#   2. rank heads by CCS, write pruning profiles, evaluate accuracy and bias per arm (soft pruning);
#      attribute the colour skew to heads, MLPs and embeddings (how much pruning can reach);
#      search the head set with the best accuracy-bias trade-off (validated on held-out images)
#   3. export the profiles (the searched one too) into a verified ONNX bundle, index a gallery
#   4. start the server in the background and grow a live gallery through the HTTP API; live
#      bias: a burst of neutral queries through two profiles, their Skew@k / MaxSkew series
#   5. serve it over HTTP with `bentoml serve` (Ctrl-C stops; SERVE=0 skips steps 4 and 5)
set -euo pipefail
WORK=${WORK:-runs/demo}
PORT=${PORT:-3000}
MODEL=(--model ccsclip-organism --pretrained embedded)
W="$WORK/world"
mkdir -p "$WORK"

echo "== 1/5 the synthetic concept world -> $W"
ccsclip organism generate --out "$W" > "$WORK/world.json"
echo "== 1/5 probe import: the shape probe as a user would have it -> $WORK/imported/accuracy-shape"
# Its class folders, a class-names file and a templates file (written here from the world's
# probe.yaml); the import must reproduce that probe exactly: same files, hash and spec.
python - "$W/accuracy-shape/probe.yaml" "$WORK/imported" <<'PY'
import sys, pathlib, yaml
spec, out = yaml.safe_load(open(sys.argv[1])), pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
(out / "shape-classes.txt").write_text("".join(f"{c['folder']}\t{c['name']}\n" for c in spec["classes"]))
(out / "shape-templates.txt").write_text("".join(f"{t}\n" for t in spec["templates"]))
PY
ccsclip probe import folder "$W/accuracy-shape" --classes "$WORK/imported/shape-classes.txt" \
  --templates "$WORK/imported/shape-templates.txt" --out "$WORK/imported/accuracy-shape" --overwrite
cmp "$W/accuracy-shape/probe.yaml" "$WORK/imported/accuracy-shape/probe.yaml"

echo "== 2/5 rank heads (CCS, tags judge, null of random heads), profiles, evaluation -> $WORK/rank"
PROBES=()
for concept in shape colour size position pattern brightness; do
  PROBES+=(--probe "$W/accuracy-$concept")
done
# The organism pool has six concepts, so a random head already scores ~2.1 (the null printed
# below): high = CCS >= 4 (p < 0.05 against that null), low = CCS <= 2 (at or below it).
ccsclip rank "${MODEL[@]}" --images "$W/calibration" --pool "$W/pool.txt" --layers all \
  --high 4 --moderate 3 --low 2 --null-samples 200 --out "$WORK/rank" \
  "${PROBES[@]}" --probe "$W/bias-shape-colour"

echo "== 2/5 where colour skew lives: its gaps attributed to heads, MLPs, embeddings -> $WORK/attribution"
ccsclip attribute "${MODEL[@]}" --bias-probe "$W/bias-shape-colour" --attribute colour \
  --means "$WORK/rank/stats/means.safetensors" --out "$WORK/attribution"

echo "== 2/5 search heads that lower colour MaxSkew within 1 point of accuracy (held out) -> $WORK/search"
ccsclip organism generate --out "$WORK/world-s1" --seed 1 > /dev/null  # another world, for a check
ccsclip search "${MODEL[@]}" "${PROBES[@]}" --bias-probe "$W/bias-shape-colour" --attribute colour \
  --means "$WORK/rank/stats/means.safetensors" --ccs "$WORK/rank/ccs.json" --max-heads 4 --verify-top 3 \
  --attribution --check-probe "$WORK/world-s1/bias-shape-colour" --out "$WORK/search"
SEARCHED=()  # search.yaml exists only when a head set met the constraint on validation
[ -f "$WORK/search/profiles/search.yaml" ] && SEARCHED=(--profile "$WORK/search/profiles/search.yaml")

echo "== 3/5 export the profiles to ONNX, verify the bundle, index the gallery -> $WORK/bundle"
P="$WORK/rank/profiles"
ccsclip export "${MODEL[@]}" --out "$WORK/bundle" --default-profile baseline \
  --profile "$P/baseline.yaml" --profile "$P/high-ccs.yaml" --profile "$P/low-ccs.yaml" \
  --profile "$P/random-s0.yaml" "${SEARCHED[@]}" --int8 baseline --probe "$W/accuracy-shape" \
  --probe "$W/accuracy-pattern" --probe "$W/bias-shape-colour"  # the served probes, baked
ccsclip bundle verify "$WORK/bundle"
ccsclip index --bundle "$WORK/bundle" --profile baseline --images "$W/gallery" \
  --root "$WORK/galleries" --name gallery --backend exact
ccsclip gallery check --root "$WORK/galleries" --repair  # what crashes left, removed (none here)

if [ "${SERVE:-1}" = "0" ]; then
  echo "== 4-5/5 skipped (SERVE=0)"
  exit 0
fi
export CCSCLIP_BUNDLE="$WORK/bundle" CCSCLIP_GALLERIES=""  # none shipped read-only here
export CCSCLIP_PROBES="$W/accuracy-shape,$W/accuracy-pattern,$W/bias-shape-colour"
export CCSCLIP_GALLERY_ROOT="$WORK/galleries"  # the indexed gallery and the live one, together
export BENTOML_DO_NOT_TRACK=True

echo "== 4/5 a gallery that grows: create it, upsert images, search, delete over HTTP"
# Every pruned request is compared with the full model here (the default samples 5 %), so the
# judge's shadow figures reach their minimum sample within the demo's short burst.
CCSCLIP_SHADOW_RATE=1 bentoml serve service:CCSClip --port "$PORT" > "$WORK/serve-gallery.log" 2>&1 &
SERVER=$!
# Stop the whole process tree: BentoML's workers run in sessions of their own (docs/service.md).
trap 'python -m ccsclip.service.proctree "$SERVER" || true' EXIT
python "$(dirname "$0")/demo_gallery.py" --url "http://127.0.0.1:$PORT" --images "$W/gallery"
echo "== 4/5 live bias: neutral queries through baseline (A) and high-ccs (B), per-profile series"
python "$(dirname "$0")/demo_live_bias.py" --url "http://127.0.0.1:$PORT" \
  --probe "$W/bias-shape-colour" --profiles baseline high-ccs
python -m ccsclip.service.proctree "$SERVER"
trap - EXIT

echo "== 5/5 serving on http://127.0.0.1:$PORT (profiles: baseline, high-ccs, low-ccs, random-s0,"
echo "       and search when it met its constraint; galleries 'gallery' and 'live' in $CCSCLIP_GALLERY_ROOT)"
exec bentoml serve service:CCSClip --port "$PORT"
