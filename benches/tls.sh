#!/usr/bin/env bash
# benches/tls.sh: tern's cost of TLS, on one Istio-style mTLS hop between two terns.
#
#   wrk ──plaintext──▶ tern-client ──(mTLS | plaintext)──▶ tern-server (direct_response, 1 KiB)
#
# Measured, each for DURATION seconds (loopback only, one worker per tern):
#   hop-plain    HTTP/1.1 req/s through the hop with plaintext between the terns (the baseline,
#                as benches/load.sh measures a proxy), and the CPU both terns spend per request.
#   hop-mtls     the same with ISTIO_MUTUAL-shaped mTLS between the terns (SPIFFE certificates,
#                ALPN istio-peer-exchange/istio, SAN check, TLS 1.3): pooled keep-alive upstream
#                connections, so this is the cost of TLS records.
#   hop-newconn  the mTLS hop with max_requests_per_connection: 1 on the client's cluster: every
#                request is a new tern→tern mTLS handshake (handshakes/s = req/s).
#   s_time       `openssl s_time -new` against tern-server's mTLS listener with a client
#                certificate: full handshakes/s tern terminates (openssl's own CPU included in
#                the machine, not in tern's figure).
# Reported: req/s (or handshakes/s) and tern CPU µs per request (both terns together, from
# /proc/<pid>/stat utime+stime), with mtls ÷ plain ratios. Compare ratios from one run
# (shared/BENCHMARKING.md), never absolute figures across runs.
#
# Knobs: TERN_BIN (default: cargo build --release), DURATION (10), CONNS (16), BASE_PORT (18100;
# uses BASE..BASE+9), OUT (benches/out/tls).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT=${OUT:-$HERE/out/tls}
DURATION=${DURATION:-10}
CONNS=${CONNS:-16}
BASE_PORT=${BASE_PORT:-18100}

SERVER_MTLS_PORT=$((BASE_PORT + 0))
SERVER_PLAIN_PORT=$((BASE_PORT + 1))
SERVER_ADMIN=$((BASE_PORT + 2))
CLIENT_MTLS_PORT=$((BASE_PORT + 3))
CLIENT_PLAIN_PORT=$((BASE_PORT + 4))
CLIENT_NEWCONN_PORT=$((BASE_PORT + 5))
CLIENT_ADMIN=$((BASE_PORT + 6))

# shellcheck source=benches/lib.sh
source "$HERE/lib.sh"
bench_init tls.sh

for tool in wrk openssl curl; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install wrk openssl curl)"
done
mkdir -p "$OUT"
rm -f "$OUT"/*.txt "$OUT"/*.log

if [[ -z ${TERN_BIN:-} ]]; then
    log "cargo build --release (tern)"
    (cd "$ROOT" && cargo build --release) || die "cargo build --release failed"
    TERN_BIN=$ROOT/target/release/tern
fi
[[ -x $TERN_BIN ]] || die "TERN_BIN=$TERN_BIN is not executable"

# ---------------------------------------------------------------------------------------------
# Certificates: a CA and two SPIFFE workload certificates (EC P-256), as Istio's CA issues them.
cd "$OUT"
ec() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }
ec ca.key
openssl req -x509 -new -key ca.key -out ca.pem -days 2 -subj "/O=tern bench/CN=root" 2>/dev/null
leaf() { # leaf NAME SPIFFE_ID
    ec "$1.key"
    openssl req -new -key "$1.key" -out "$1.csr" -subj "/" 2>/dev/null
    printf 'subjectAltName=URI:%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$2" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}
leaf server spiffe://cluster.local/ns/bench/sa/server
leaf client spiffe://cluster.local/ns/bench/sa/client

BODY=$(head -c 1024 /dev/zero | tr '\0' 'x')
common() { # common CERT ALPN SAN_MATCHER
    printf '{ tls_params: { tls_minimum_protocol_version: TLSv1_2, tls_maximum_protocol_version: TLSv1_3 }, alpn_protocols: [%s], tls_certificates: [{ certificate_chain: { filename: %s/%s.pem }, private_key: { filename: %s/%s.key } }], validation_context: { trusted_ca: { filename: %s/ca.pem }, match_typed_subject_alt_names: [{ san_type: URI, matcher: %s }] } }' \
        "$2" "$OUT" "$1" "$OUT" "$1" "$OUT" "$3"
}
# listener NAME PORT ROUTE_ACTION [TRANSPORT_SOCKET_YAML]: one HCM listener (route "/").
listener() {
    cat <<EOF
  - name: $1
    address: { socket_address: { address: 127.0.0.1, port_value: $2 } }
    enable_reuse_port: false
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $1
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                $3
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
EOF
    [[ -n ${4:-} ]] && printf '%s\n' "$4"
    return 0
}

direct="direct_response: { status: 200, body: { inline_string: \"$BODY\" } }"
server_tls="      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context: $(common server 'h2, http/1.1' '{ prefix: "spiffe://cluster.local/" }')"
{
    printf 'admin: { address: { socket_address: { address: 127.0.0.1, port_value: %s } } }\nstatic_resources:\n  listeners:\n' "$SERVER_ADMIN"
    listener mtls "$SERVER_MTLS_PORT" "$direct" "$server_tls"
    listener plain "$SERVER_PLAIN_PORT" "$direct"
} >server.yaml

cluster() { # cluster NAME PORT TLS(0/1) EXTRA
    printf '  - name: %s\n    type: STATIC\n    connect_timeout: 1s\n%s    load_assignment: { cluster_name: %s, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %s } } } }] }] }\n' \
        "$1" "$4" "$1" "$2"
    if [[ $3 == 1 ]]; then
        printf '    transport_socket:\n      name: envoy.transport_sockets.tls\n      typed_config:\n        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n        sni: outbound_.80_._.server.bench.svc.cluster.local\n        common_tls_context: %s\n' \
            "$(common client 'istio-peer-exchange, istio' '{ exact: "spiffe://cluster.local/ns/bench/sa/server" }')"
    fi
}
newconn='    typed_extension_protocol_options: { envoy.extensions.upstreams.http.v3.HttpProtocolOptions: { "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, common_http_protocol_options: { max_requests_per_connection: 1 }, explicit_http_config: { http_protocol_options: {} } } }
'
{
    printf 'admin: { address: { socket_address: { address: 127.0.0.1, port_value: %s } } }\nstatic_resources:\n  listeners:\n' "$CLIENT_ADMIN"
    listener mtls "$CLIENT_MTLS_PORT" "route: { cluster: mtls }"
    listener plain "$CLIENT_PLAIN_PORT" "route: { cluster: plain }"
    listener newconn "$CLIENT_NEWCONN_PORT" "route: { cluster: newconn }"
    printf '  clusters:\n'
    cluster mtls "$SERVER_MTLS_PORT" 1 ""
    cluster plain "$SERVER_PLAIN_PORT" 0 ""
    cluster newconn "$SERVER_MTLS_PORT" 1 "$newconn"
} >client.yaml

start() { # start NAME CONFIG ADMIN_PORT
    setsid "$TERN_BIN" -c "$2" --concurrency 1 -l warning >"$OUT/$1.log" 2>&1 &
    PIDS+=($!)
    eval "${1//-/_}_PID=$!"
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$3/ready" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "$1 did not start; see $OUT/$1.log"
}
start tern-server server.yaml "$SERVER_ADMIN"
start tern-client client.yaml "$CLIENT_ADMIN"

ticks() { # ticks PID: utime+stime
    local line f
    read -r line <"/proc/$1/stat"
    line=${line##*) }
    read -ra f <<<"$line"
    echo $((f[11] + f[12]))
}
HZ=$(getconf CLK_TCK)

# Check the paths work before measuring.
for p in $CLIENT_PLAIN_PORT $CLIENT_MTLS_PORT $CLIENT_NEWCONN_PORT; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/")
    [[ $code == 200 ]] || die "port $p answered $code; see $OUT/*.log"
done

declare -A RPS CPU
measure() { # measure NAME PORT
    local c0 s0 c1 s1 reqs
    c0=$(ticks "$tern_client_PID"); s0=$(ticks "$tern_server_PID")
    wrk -t 1 -c "$CONNS" -d "${DURATION}s" "http://127.0.0.1:$2/" >"$OUT/wrk-$1.txt" 2>&1
    c1=$(ticks "$tern_client_PID"); s1=$(ticks "$tern_server_PID")
    reqs=$(awk '/requests in/ {print $1}' "$OUT/wrk-$1.txt")
    RPS[$1]=$(awk -v r="$reqs" -v d="$DURATION" 'BEGIN { printf "%.0f", r / d }')
    CPU[$1]=$(awk -v t=$((c1 - c0 + s1 - s0)) -v hz="$HZ" -v r="$reqs" 'BEGIN { printf "%.1f", (r > 0) ? t / hz * 1e6 / r : 0 }')
    log "$1: ${RPS[$1]} req/s, ${CPU[$1]} µs tern CPU per request"
}
measure hop-plain "$CLIENT_PLAIN_PORT"
measure hop-mtls "$CLIENT_MTLS_PORT"
measure hop-newconn "$CLIENT_NEWCONN_PORT"

s0=$(ticks "$tern_server_PID")
openssl s_time -connect "127.0.0.1:$SERVER_MTLS_PORT" -new -time "$DURATION" \
    -cert client.pem -key client.key -CAfile ca.pem >"$OUT/s_time.txt" 2>&1 || true
s1=$(ticks "$tern_server_PID")
conns=$(awk '/connections in [0-9.]+ real seconds/ {print $1; exit}' "$OUT/s_time.txt")
conns=${conns:-0}
RPS[s_time]=$(awk -v n="$conns" -v d="$DURATION" 'BEGIN { printf "%.0f", n / d }')
CPU[s_time]=$(awk -v t=$((s1 - s0)) -v hz="$HZ" -v n="$conns" 'BEGIN { printf "%.1f", (n > 0) ? t / hz * 1e6 / n : 0 }')
log "s_time: ${RPS[s_time]} handshakes/s, ${CPU[s_time]} µs tern-server CPU per handshake"

{
    echo "tern TLS bench ($(date -u +%FT%TZ)), $DURATION s each, $CONNS connections, TERN_BIN=$TERN_BIN"
    printf '%-12s %12s %22s\n' what "req/s" "tern CPU µs/request"
    for k in hop-plain hop-mtls hop-newconn s_time; do
        printf '%-12s %12s %22s\n' "$k" "${RPS[$k]}" "${CPU[$k]}"
    done
    awk -v a="${RPS[hop-mtls]}" -v b="${RPS[hop-plain]}" -v c="${CPU[hop-mtls]}" -v d="${CPU[hop-plain]}" \
        'BEGIN { if (b > 0 && d > 0) printf "mtls ÷ plain: req/s %.2f, CPU per request %.2f\n", a / b, c / d }'
} | tee "$OUT/results.txt"
