# benches/lib.sh: helpers shared by the bench scripts (sourced, not run). They read CLK_TCK,
# BUSY_LIMIT and QUIET_WAIT from the caller and call its `log`.

# bench_init NAME: `log` and `die` with lines prefixed by NAME, and PIDS: every process the
# script starts goes there and is killed on exit, error or Ctrl-C (TERM, then KILL).
bench_init() {
    BENCH_NAME=$1
    log() { printf '[%s %(%H:%M:%S)T] %s\n' "$BENCH_NAME" -1 "$*" >&2; }
    die() { log "ERROR: $*"; exit 1; }
    PIDS=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
bench_cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    exit "$rc"
}

# ticks_of PID VAR: utime+stime of the whole process (all threads), clock ticks.
ticks_of() {
    local line f
    read -r line <"/proc/$1/stat"
    line=${line##*) }            # drop "pid (comm) ": comm may hold spaces
    read -ra f <<<"$line"        # f[0] is field 3 (state), so fields 14,15 are f[11],f[12]
    printf -v "$2" '%d' $((f[11] + f[12]))
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# Machine-wide busy and total ticks (all CPUs) from /proc/stat; busy = user nice system irq
# softirq (softirq ticks are also charged to the task they interrupted, as stime).
stat_of() {
    local u n s idle iow irq sirq steal rest
    read -r _ u n s idle iow irq sirq steal rest </proc/stat
    printf -v "$1" '%d' $((u + n + s + irq + sirq))
    printf -v "$2" '%d' $((u + n + s + idle + iow + irq + sirq + steal))
}

# wait_quiet: before a measurement, wait (up to QUIET_WAIT s) until the machine, where nothing of
# ours is loaded, is less busy than BUSY_LIMIT over one second.
wait_quiet() {
    local b0 t0 b1 t1 busy waited=0
    while :; do
        stat_of b0 t0
        sleep 1
        stat_of b1 t1
        busy=$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) 'BEGIN { printf "%.0f", (t > 0) ? 100 * b / t : 0 }')
        ((busy <= BUSY_LIMIT)) && return 0
        ((waited >= QUIET_WAIT)) && { log "machine still ${busy}% busy after ${waited}s: measuring anyway"; return 0; }
        ((waited == 0)) && log "machine ${busy}% busy before the run: waiting up to ${QUIET_WAIT}s"
        waited=$((waited + 1))
    done
}

# µs of CPU per request: us_per_req TICKS REQUESTS
us_per_req() { awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "NA" }'; }
