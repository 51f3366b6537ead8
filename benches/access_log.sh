#!/usr/bin/env bash
# benches/access_log.sh: what Istio's access log costs tern, HTTP/1.1 requests/s and CPU per
# request with the log off and on, side by side.
#
# Same setup as benches/load.sh (nginx origin with 1 KiB bodies, bench-envoy.yaml, one tern
# worker, wrk -t1 -c16), but only tern, twice: without an access log and with Istio's default
# text format (istio/istio EnvoyTextLogFormat) written to a file. Runs alternate (off, on, off,
# on...) and the means are reported, because single runs on a small shared machine move by ±10 %.
# With PIN=1 (default) both tern processes run on the last CPU and nginx and wrk on CPU 0, which
# removes most of that noise on 2 CPUs.
#
#   TERN_BIN=target/release/tern benches/access_log.sh
#   RUNS=5 DURATION=10 PIN=0 BASE_PORT=18100 TERN_BIN=... benches/access_log.sh
#   ISTIO_STATS=1 TERN_BIN=... benches/access_log.sh   # "on" also runs Istio's metadata
#                                                      # exchange and istio.stats filters
#
# Needs wrk, nginx, curl, taskset. Writes to OUT (benches/out/access_log); kills what it starts.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$HERE/out/access_log}
RUNS=${RUNS:-5}
DURATION=${DURATION:-10}
CONNS=${CONNS:-16}
PIN=${PIN:-1}
BASE_PORT=${BASE_PORT:-18100}
ISTIO_STATS=${ISTIO_STATS:-0}
TERN_BIN=${TERN_BIN:?set TERN_BIN to a release build of tern}
ORIGIN_PORT=$BASE_PORT
OFF_PORT=$((BASE_PORT + 1))
ON_PORT=$((BASE_PORT + 3))
LAST_CPU=$(($(nproc) - 1))

# shellcheck source=benches/lib.sh
source "$HERE/lib.sh"
bench_init access_log.sh
pin() { if [[ $PIN == 1 ]]; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }
for p in "$ORIGIN_PORT" "$OFF_PORT" $((OFF_PORT + 1)) "$ON_PORT" $((ON_PORT + 1)); do
    [[ -z $(ss -Hltn "sport = :$p") ]] || die "port $p is in use; set BASE_PORT"
done
mkdir -p "$OUT/nginx/tmp"

BODY=$(head -c 1023 /dev/zero | tr '\0' 'x')
cat >"$OUT/nginx/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $OUT/nginx/tmp/body;
    proxy_temp_path $OUT/nginx/tmp/proxy;
    fastcgi_temp_path $OUT/nginx/tmp/fastcgi;
    uwsgi_temp_path $OUT/nginx/tmp/uwsgi;
    scgi_temp_path $OUT/nginx/tmp/scgi;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        location / { return 200 "$BODY\n"; }
    }
}
EOF

render() {  # render PORT ADMIN_PORT DEST
    sed -e "s/@PORT@/$1/g" -e "s/@ADMIN_PORT@/$2/g" -e "s/@ORIGIN_PORT@/$ORIGIN_PORT/g" \
        "$HERE/bench-envoy.yaml" >"$3"
}
ISTIO='[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n'
render "$OFF_PORT" $((OFF_PORT + 1)) "$OUT/tern-off.yaml"
render "$ON_PORT" $((ON_PORT + 1)) "$OUT/tern-on.yaml"
: >"$OUT/access.log"
cat >"$OUT/alog.yaml" <<EOF
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: $OUT/access.log
              log_format:
                text_format_source:
                  inline_string: "$ISTIO"
EOF
sed -i "/^          codec_type: AUTO$/r $OUT/alog.yaml" "$OUT/tern-on.yaml"
grep -q access_loggers.file "$OUT/tern-on.yaml" || die "no access log in $OUT/tern-on.yaml"
if [[ $ISTIO_STATS == 1 ]]; then
    # Istio's telemetry as istiod configures an outbound sidecar: the metadata exchange plugin
    # and the stats filter before the router, the node metadata they read, the cluster's
    # service metadata.
    cat >"$OUT/istio-filters.yaml" <<'YAML'
          - name: istio.metadata_exchange
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                vm_config:
                  runtime: envoy.wasm.runtime.null
                  code: { local: { inline_string: envoy.wasm.metadata_exchange } }
                configuration:
                  "@type": type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange
          - name: istio.stats
            typed_config:
              "@type": type.googleapis.com/stats.PluginConfig
YAML
    cat >"$OUT/istio-node.yaml" <<'YAML'
  metadata:
    NAME: productpage-v1-abc
    NAMESPACE: default
    WORKLOAD_NAME: productpage-v1
    CLUSTER_ID: Kubernetes
    LABELS: { app: productpage, version: v1 }
YAML
    cat >"$OUT/istio-cluster.yaml" <<'YAML'
    metadata:
      filter_metadata:
        istio:
          services:
          - { host: origin.default.svc.cluster.local, name: origin, namespace: default }
YAML
    sed -i -e "/^          http_filters:$/r $OUT/istio-filters.yaml" \
        -e "/^  cluster: bench$/r $OUT/istio-node.yaml" \
        -e "/^    connect_timeout: 1s$/r $OUT/istio-cluster.yaml" \
        -e "s/^  - name: ingress_http$/  - name: ingress_http\n    traffic_direction: OUTBOUND/" \
        "$OUT/tern-on.yaml"
    grep -q istio.stats "$OUT/tern-on.yaml" || die "no istio.stats in $OUT/tern-on.yaml"
fi

start() {  # start NAME PORT CPU CMD...: detached, waits for a 200 on PORT
    local name=$1 port=$2 cpu=$3
    shift 3
    # Not through `pin`: a function in the background would be a subshell, and $! its pid.
    if [[ $PIN == 1 ]]; then
        taskset -c "$cpu" "$@" >"$OUT/$name.log" 2>&1 </dev/null &
    else
        "$@" >"$OUT/$name.log" 2>&1 </dev/null &
    fi
    PIDS+=("$!")
    printf -v "PID_$name" '%s' "$!"
    for _ in $(seq 1 100); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/") == 200 ]] && return
        sleep 0.1
    done
    die "$name does not answer on $port; see $OUT/$name.log"
}
start origin "$ORIGIN_PORT" 0 nginx -e "$OUT/nginx/error.log" -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf"
start off "$OFF_PORT" "$LAST_CPU" "$TERN_BIN" --concurrency 1 -c "$OUT/tern-off.yaml"
start on "$ON_PORT" "$LAST_CPU" "$TERN_BIN" --concurrency 1 -c "$OUT/tern-on.yaml"

HZ=$(getconf CLK_TCK)
ticks() { local l; read -r l <"/proc/$1/stat"; l=${l##*) }; read -ra f <<<"$l"; echo $((f[11] + f[12])); }
declare -A SUM_RPS SUM_CPU
for ((i = 1; i <= RUNS; i++)); do
    for v in off on; do
        port=$OFF_PORT pid=$PID_off
        [[ $v == on ]] && port=$ON_PORT pid=$PID_on
        pin 0 wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$port/" >/dev/null
        t0=$(ticks "$pid")
        out=$(pin 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$port/")
        t1=$(ticks "$pid")
        rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
        n=$(awk '/ requests in / { print $1 }' <<<"$out")
        cpu=$(awk -v t=$((t1 - t0)) -v n="$n" -v hz="$HZ" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')
        printf 'run %d  log %-3s  %10s req/s  %6s CPU µs/req\n' "$i" "$v" "$rps" "$cpu"
        SUM_RPS[$v]=$(awk -v a="${SUM_RPS[$v]:-0}" -v b="$rps" 'BEGIN { print a + b }')
        SUM_CPU[$v]=$(awk -v a="${SUM_CPU[$v]:-0}" -v b="$cpu" 'BEGIN { print a + b }')
    done
done
awk -v ro="${SUM_RPS[off]}" -v rn="${SUM_RPS[on]}" -v co="${SUM_CPU[off]}" -v cn="${SUM_CPU[on]}" -v r="$RUNS" 'BEGIN {
    printf "mean  log off %10.0f req/s %6.2f CPU µs/req\n", ro / r, co / r
    printf "mean  log on  %10.0f req/s %6.2f CPU µs/req\n", rn / r, cn / r
    printf "on/off: req/s %.3f (cost %.1f%%), CPU per request %.3f\n", rn / ro, 100 * (1 - rn / ro), cn / co }'
log "$(wc -l <"$OUT/access.log") lines logged; first: $(head -1 "$OUT/access.log")"
if [[ $ISTIO_STATS == 1 ]]; then
    log "$(curl -s "http://127.0.0.1:$((ON_PORT + 1))/stats/prometheus" | grep '^istio_requests_total' | head -1)"
fi
