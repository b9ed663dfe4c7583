#!/usr/bin/env bash
# 12 MP images/min, --tile-exits per-tile against shared, interleaved, 3 runs each, on the
# three JPEGs of make_mosaics.py (/tmp/m12); pause any training run first (SIGSTOP).
cd "$(dirname "$0")/../../.."  # the repository root
for run in 1 2 3; do
  for m in per-tile shared; do
    rm -rf /tmp/m12out; s=$(date +%s.%N)
    ${RBQE:-rbqe} enhance /tmp/m12 -o /tmp/m12out --tile-exits $m --report /tmp/m12_r.json >/dev/null 2>&1
    e=$(date +%s.%N)
    python3 - "$m" "$s" "$e" <<'PY'
import json, sys
m, s, e = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
images = json.load(open('/tmp/m12_r.json'))['images']
ex = [{k: v for k, v in it['tile_exits']['histogram'].items() if v} if it.get('tile_exits')
      else it['exit'] for it in images]
print(f"{m}: {e-s:.1f} s for 3 -> {180/(e-s):.2f} images/min; exits {ex}", flush=True)
PY
  done
done
