#!/usr/bin/env bash
# 12 MP images/min, two weights files, interleaved, 3 runs each.
cd "$(dirname "$0")/../../.."  # the repository root
OLD=${1:?usage: time.sh OLD.safetensors [NEW.safetensors]}; NEW=${2:-weights/rbqe_jpeg.safetensors}
for run in 1 2 3; do
  for w in "$OLD" "$NEW"; do
    rm -rf /tmp/m12out; s=$(date +%s.%N)
    ${RBQE:-rbqe} enhance /tmp/m12 -o /tmp/m12out --weights $w --report /tmp/m12_r.json >/dev/null 2>&1
    e=$(date +%s.%N)
    python3 - "$w" "$s" "$e" <<'PY'
import json, sys
w, s, e = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
images = json.load(open('/tmp/m12_r.json'))['images']
ex = [it.get('tile_exits', {}).get('histogram') or it['exit'] for it in images]
print(f"{w.split('/')[-1]}: {e-s:.1f} s for 3 -> {180/(e-s):.2f} images/min; exits {ex}")
PY
  done
done
