#!/usr/bin/env bash
# benches/rpc.sh: RPC protocols through tern's generic proxy, beside HTTP/2 through the HTTP
# connection manager. CONC (64) requests in flight on ONE downstream connection, for DURATION
# seconds after a 1 s warm-up; reports requests/s and tern's CPU µs per request (utime+stime of
# the tern process from /proc/PID/stat over all requests it served, warm-up included).
#
#   benches/rpc.sh                 # dubbo, then h2
#   benches/rpc.sh dubbo bolt      # several protocols (each has an arm in rpc_load.rs and in
#                                  # codec_yaml below), then h2
#   NO_H2=1 TERN_BIN=target/release/tern LOAD_BIN=target/release/examples/rpc_load benches/rpc.sh
#
# Knobs: DURATION (10), CONC (64), BASE_PORT (18100; uses BASE+1..BASE+3), BUSY_LIMIT (20),
# QUIET_WAIT (30), OUT (benches/out/rpc), NO_H2. tern runs with --concurrency 1, the upstream
# and the load generator are `examples/rpc_load.rs` on a current-thread runtime each.
# Everything this script starts is killed on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT=${OUT:-$HERE/out/rpc}
DURATION=${DURATION:-10}
CONC=${CONC:-64}
BASE_PORT=${BASE_PORT:-18100}
BUSY_LIMIT=${BUSY_LIMIT:-20}
QUIET_WAIT=${QUIET_WAIT:-30}
UP_PORT=$((BASE_PORT + 1))
TERN_PORT=$((BASE_PORT + 2))
CLK_TCK=$(getconf CLK_TCK)

# ticks_of, wait_quiet, us_per_req
# shellcheck source=benches/lib.sh
source "$HERE/lib.sh"

bench_init rpc.sh
mkdir -p "$OUT"

if [[ -z ${TERN_BIN:-} || -z ${LOAD_BIN:-} ]]; then
    log "cargo build --release --bin tern --example rpc_load"
    (cd "$ROOT" && cargo build --release --bin tern --example rpc_load) || die "cargo build failed"
    TERN_BIN=${TERN_BIN:-$ROOT/target/release/tern}
    LOAD_BIN=${LOAD_BIN:-$ROOT/target/release/examples/rpc_load}
fi

# codec_yaml PROTO: the generic_proxy codec_config for a protocol.
codec_yaml() {
    case $1 in
    dubbo) echo 'type.googleapis.com/envoy.extensions.filters.network.generic_proxy.codecs.dubbo.v3.DubboCodecConfig' ;;
    bolt) echo 'type.googleapis.com/tern.generic_proxy.codecs.bolt.v1.BoltCodecConfig' ;;
    *) die "no codec config for $1 in benches/rpc.sh (add it to codec_yaml)" ;;
    esac
}

# tern_yaml PROTO: a listener on TERN_PORT to a cluster on UP_PORT.
tern_yaml() {
    local cluster_opts="" filter
    if [[ $1 == h2 ]]; then
        cluster_opts='
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }'
        filter='
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{ match: { prefix: "/" }, route: { cluster: up } }]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }'
    else
        filter="
      - name: envoy.filters.network.generic_proxy
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.v3.GenericProxy
          stat_prefix: bench
          codec_config:
            name: codec
            typed_config: { \"@type\": $(codec_yaml "$1") }
          route_config:
            name: all
            routes:
              on_no_match:
                action:
                  name: up
                  typed_config:
                    \"@type\": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.action.v3.RouteAction
                    cluster: up
          filters:
          - name: router
            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.router.v3.Router }"
    fi
    cat <<EOF
static_resources:
  listeners:
  - name: bench
    address: { socket_address: { address: 127.0.0.1, port_value: $TERN_PORT } }
    filter_chains:
    - filters:$filter
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s$cluster_opts
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $UP_PORT } } }
EOF
}

wait_port() {
    local i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on port $1"
}

protos=("${@:-dubbo}")
[[ -n ${NO_H2:-} ]] || protos+=(h2)
results=()
for proto in "${protos[@]}"; do
    "$LOAD_BIN" server "$proto" "127.0.0.1:$UP_PORT" >"$OUT/upstream-$proto.log" 2>&1 &
    up=$!
    PIDS+=("$up")
    tern_yaml "$proto" >"$OUT/tern-$proto.yaml"
    "$TERN_BIN" --concurrency 1 -c "$OUT/tern-$proto.yaml" -l warning >"$OUT/tern-$proto.log" 2>&1 &
    tern=$!
    PIDS+=("$tern")
    wait_port "$UP_PORT"
    wait_port "$TERN_PORT"
    wait_quiet
    log "$proto: $CONC in flight on one connection for ${DURATION}s"
    ticks_of "$tern" t0
    line=$("$LOAD_BIN" client "$proto" "127.0.0.1:$TERN_PORT" "$CONC" "$DURATION")
    ticks_of "$tern" t1
    echo "$line" >"$OUT/client-$proto.txt"
    total=$(sed -n 's/.*total=\([0-9]*\).*/\1/p' <<<"$line")
    rps=$(sed -n 's/.*rps=\([0-9]*\).*/\1/p' <<<"$line")
    errors=$(sed -n 's/.*errors=\([0-9]*\).*/\1/p' <<<"$line")
    results+=("$(printf '%-6s %10s %10s %8s' "$proto" "$rps" "$(us_per_req $((t1 - t0)) "$total")" "$errors")")
    kill -TERM "$tern" "$up" 2>/dev/null || true
    wait "$tern" "$up" 2>/dev/null || true
done
{
    echo "tern $( "$TERN_BIN" --version 2>/dev/null | head -1 ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
    printf '%-6s %10s %10s %8s\n' proto 'req/s' 'cpu_us/req' errors
    printf '%s\n' "${results[@]}"
} | tee "$OUT/results.txt"
