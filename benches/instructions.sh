#!/usr/bin/env bash
# benches/instructions.sh: user-space instructions per proxied HTTP/1.1 request, under
# callgrind. Unlike CPU time on a shared 2-core machine, the count does not move between runs,
# so it tells a small change in tern's own code from noise.
#
#   benches/load.sh                                   # once: writes the origin and tern configs
#   benches/instructions.sh target/release/tern /path/to/other/tern
#
# For each binary: start it under valgrind (instrumentation off), warm up with 200 requests,
# switch instrumentation on, send N requests with h2load over 4 connections through the nginx
# origin of load.sh, switch it off and divide the instructions counted by N. Kernel work
# (the loopback TCP that is two thirds of tern's CPU) is not counted.
#
# Knobs: N (requests, 3000), OUT (load.sh's output directory, benches/out).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$HERE/out}
N=${N:-3000}
[ $# -gt 0 ] || { echo "usage: $0 TERN_BIN..." >&2; exit 2; }
for tool in valgrind callgrind_control h2load nginx curl; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install valgrind nghttp2-client nginx-light curl)" >&2; exit 2; }
done
[ -f "$OUT/tern.yaml" ] && [ -f "$OUT/nginx/nginx.conf" ] || { echo "run benches/load.sh once first (it writes $OUT/tern.yaml and the origin's config)" >&2; exit 2; }
# The listener: the second port in load.sh's tern.yaml (after the admin port).
PORT=$(sed -n 's/.*port_value: *\([0-9]*\).*/\1/p' "$OUT/tern.yaml" | sed -n 2p)

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

nginx -e "$OUT/nginx/error.log" -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" &
PIDS+=($!)
sleep 0.3
for bin in "$@"; do
  dir=$(mktemp -d)
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/cg.out" \
    "$bin" --concurrency 1 -c "$OUT/tern.yaml" -l error >/dev/null 2>"$dir/valgrind.log" &
  pid=$!
  PIDS+=($pid)
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.3; done
  for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$PORT/"; done
  callgrind_control -i on "$pid" >/dev/null
  h2load --h1 -n "$N" -c 4 "http://127.0.0.1:$PORT/" | grep -E '^requests:'
  callgrind_control -i off "$pid" >/dev/null
  callgrind_control -d "$pid" >/dev/null
  sleep 1
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  ir=$(grep -h '^summary:\|^totals:' "$dir"/cg.out.* | tail -1 | awk '{print $2}')
  echo "$bin: $((ir / N)) instructions per request (callgrind output in $dir)"
done
