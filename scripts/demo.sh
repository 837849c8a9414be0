#!/usr/bin/env bash
# The README's main-job command: set everything up, make a sample video with
# ffmpeg, index it end to end on the embedded defaults (embedded PostgreSQL,
# in-process pipeline), then search the database with one of its frames.
#
# CLIP weights: CLIP_CHECKPOINT if you set it; else the real CLIP_PRETRAINED
# weights (downloaded once into CLIP_CACHE_DIR); on a machine that cannot
# download them, a checkpoint of RANDOM weights made locally, so the whole
# pipeline still runs (its similarities are meaningless; say so loudly).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install.sh
# The same state directory the CLI uses by default (VIDX_DATA_DIR, else ~/.vidx),
# so `vidx search` / `vidx db stop` after the demo see the demo's database.
export VIDX_LOG_LEVEL="${VIDX_LOG_LEVEL:-warning}"
PY=.venv/bin/python
VIDX=.venv/bin/vidx
OWNER=00000000-0000-0000-0000-0000000000d0
data_dir=$($PY -c "from pipeline.core.config import load_settings; print(load_settings().data_dir)")
demo="$data_dir/demo"
mkdir -p "$demo"

sample="$demo/sample.mp4"
[ -f "$sample" ] || $PY scripts/make_sample_video.py "$sample"

if [ -z "${CLIP_CHECKPOINT:-}" ] && ! $PY scripts/clip_weights_reachable.py; then
  ckpt="$demo/${CLIP_MODEL_NAME:-ViT-B-32}-random.pt"
  echo "!! CLIP weights for CLIP_PRETRAINED=${CLIP_PRETRAINED:-openai} cannot be downloaded here (offline)."
  echo "!! Using RANDOM weights ($ckpt) so the pipeline runs end to end; search results are meaningless."
  [ -f "$ckpt" ] || $PY scripts/make_checkpoint.py "${CLIP_MODEL_NAME:-ViT-B-32}" "$ckpt"
  export CLIP_CHECKPOINT="$ckpt"
  random_weights=1
fi

echo "== vidx index $sample"
$VIDX index "$sample" --owner "$OWNER" --json > "$demo/index.json"
$PY - "$demo/index.json" <<'PYEOF'
import json, sys
[video] = json.load(open(sys.argv[1]))
print(f"video {video['video_id']}: {len(video['scenes'])} scenes -> {video['sidecar']}")
for s in video["scenes"]:
    state = "embedded" if s["embedded"] else f"no embedding ({s['visual_clip_metadata']['error']})"
    best = s["best_frame"]
    print(f"  scene {s['index']}: {s['start_s']:6.2f}-{s['end_s']:6.2f}s  best frame @{best['time_s']:.2f}s"
          f"  quality {best['quality']['quality_score']:.2f}  {state}")
PYEOF
frame=$($PY -c "import json,sys; v=json.load(open(sys.argv[1]))[0]; print(v['scenes'][2]['frame_path'])" "$demo/index.json")
# A copy outside the sidecar: frame_path names one published version, which re-indexing replaces.
query="$demo/query.jpg"
cp "$frame" "$query"

echo "== vidx search --image $query"
$VIDX search --image "$query" --owner "$OWNER" --limit 3

video_id=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))[0]['video_id'])" "$demo/index.json")
prefix=""
[ -n "${CLIP_CHECKPOINT:-}" ] && prefix="CLIP_CHECKPOINT=$CLIP_CHECKPOINT "
text_threshold=""
[ -n "${random_weights:-}" ] && text_threshold=" --threshold -1"  # random weights: text similarities are noise
cat <<EOF

== done. State: $data_dir (embedded database, sidecars with best-frame JPEGs).
Try next (copy-paste):
  source .venv/bin/activate
  ${prefix}vidx search --text "a colourful test pattern" --owner $OWNER --limit 3$text_threshold
  ${prefix}vidx search --image "$query" --owner $OWNER --json
  vidx status $video_id
  vidx show $video_id                               # scene ids, labels, descriptions
  vidx sheet $video_id -o sheet.png                 # contact sheet: one tile per scene

The web page and HTTP API on these results:
  vidx apikey create --owner $OWNER --name demo     # prints a key once: paste it into the page
  ${prefix}vidx serve --port 8000                         # then open http://127.0.0.1:8000/

  vidx db stop        # the embedded PostgreSQL keeps running until you stop it
EOF
