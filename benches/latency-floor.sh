#!/usr/bin/env bash
# benches/latency-floor.sh: what one proxy hop adds to p99 latency on this machine at
# 1,000 requests/s, whatever the proxy does. Beside direct, HAProxy and tern it runs HAProxy
# as a plain TCP relay (`mode tcp`: bytes in, bytes out, no HTTP parsing): no HTTP proxy can
# add less than that relay, so its figure is the floor under load.sh's "p99 added".
#
#   benches/load.sh                                     # once: writes the configs used here
#   benches/latency-floor.sh target/release/tern
#
# Each round runs `h2load --h1 -c1 --rps=1000 -D 5` against every target in turn; the report
# gives each round's p99 and the p99 pooled over the rounds, and what each adds to direct.
# Knobs: ROUNDS (6), OUT (load.sh's output directory, benches/out), BASE_PORT (as load.sh).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$HERE/out}
ROUNDS=${ROUNDS:-6}
BASE_PORT=${BASE_PORT:-18000}
[ $# -eq 1 ] || { echo "usage: $0 TERN_BIN" >&2; exit 2; }
TERN_BIN=$1
for tool in h2load nginx haproxy curl; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install nghttp2-client nginx-light haproxy curl)" >&2; exit 2; }
done
for f in tern.yaml haproxy.cfg nginx/nginx.conf; do
  [ -f "$OUT/$f" ] || { echo "run benches/load.sh once first (it writes $OUT/$f)" >&2; exit 2; }
done
ORIGIN=$BASE_PORT
RELAY=$((BASE_PORT + 40))
TERN=$(sed -n 's/.*port_value: *\([0-9]*\).*/\1/p' "$OUT/tern.yaml" | sed -n 2p)
HAPROXY=$(sed -n 's/^ *bind 127.0.0.1:\([0-9]*\)$/\1/p' "$OUT/haproxy.cfg" | head -1)

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

cat >"$OUT/haproxy-tcp.cfg" <<EOF
# written by benches/latency-floor.sh
global
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend relay
    bind 127.0.0.1:$RELAY
    default_backend origin
backend origin
    server origin 127.0.0.1:$ORIGIN
EOF
nginx -e "$OUT/nginx/error.log" -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" &
PIDS+=($!)
haproxy -f "$OUT/haproxy-tcp.cfg" &
PIDS+=($!)
haproxy -f "$OUT/haproxy.cfg" &
PIDS+=($!)
"$TERN_BIN" --concurrency 1 -c "$OUT/tern.yaml" -l error &
PIDS+=($!)
for port in "$ORIGIN" "$RELAY" "$HAPROXY" "$TERN"; do
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
done

TARGETS=(direct haproxy-tcp haproxy tern)
declare -A PORT=([direct]=$ORIGIN [haproxy-tcp]=$RELAY [haproxy]=$HAPROXY [tern]=$TERN)
dir=$(mktemp -d)
for r in $(seq "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    h2load --h1 -c1 --rps=1000 -D 5 --log-file="$dir/$t-$r.log" "http://127.0.0.1:${PORT[$t]}/" >/dev/null
  done
done
# p99 of the 2xx latencies (µs, third column of h2load's log) in the files given.
p99() { awk -F'\t' 'NR > 1 && $2 == 200 { print $3 }' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int(NR * 0.99)] }'; }
# Cold requests (the first after a pause of over 5 ms, about 1 in 10 with h2load's pacing)
# and the rest: "cold_p50 cold_p90 warm_p50 warm_p99".
split() {
  local k
  for k in cold warm; do
    awk -F'\t' -v k=$k 'NR > 1 && $2 == 200 { if ((($1 - prev > 5000) ? "cold" : "warm") == k) print $3 } { prev = $1 }' "$@" |
      sort -n | awk '{ a[NR] = $1 } END { printf "%d %d ", a[int(NR * 0.5)], a[int(NR * (k == "cold" ? 0.9 : 0.99))] }' k=$k
  done
  echo
}
base=$(p99 "$dir"/direct-[0-9]*.log)
printf '%-12s %-36s %6s %6s   %-20s %s\n' target "p99 µs, round by round" pooled added "cold p50/p90" "warm p50/p99"
for t in "${TARGETS[@]}"; do
  rounds=""
  for r in $(seq "$ROUNDS"); do rounds+="$(p99 "$dir/$t-$r.log") "; done
  pooled=$(p99 "$dir"/"$t"-[0-9]*.log)
  read -r c50 c90 w50 w99 < <(split "$dir"/"$t"-[0-9]*.log)
  printf '%-12s %-36s %6s %6s   %-20s %s\n' "$t" "$rounds" "$pooled" "+$((pooled - base))" "$c50 / $c90" "$w50 / $w99"
done
echo "(h2load logs in $dir)"
