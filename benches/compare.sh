#!/usr/bin/env bash
# tandem vs Nchan, side by side, on this machine, in one session.
#
#   bash benches/compare.sh            # full run (about 10 minutes), writes docs/benchmarks.md
#   QUICK=1 bash benches/compare.sh    # small numbers, a smoke test of the script itself
#   ONLY=publish bash benches/compare.sh   # only the scenarios whose name matches
#                                          # (tables printed, docs/ left alone)
#   ONLY=redis bash benches/compare.sh     # only the two-nodes-on-Redis scenarios:
#                                          # rewrites their section of docs/ only
#                                          # (a subset of them is only printed)
#
# For each scenario it starts a fresh server (tandem in release mode with one
# worker thread, or Nchan: nginx with one process and the memory store, config
# in benches/nchan.conf), runs benches/loadgen.rs against it, and stops it by
# PID. Everything listens on 127.0.0.1; every run is bounded in time.
#
# The redis-* scenarios run two nodes on one Redis instead: two tandem
# processes (`--redis`) or two nginx+Nchan processes (benches/nchan-redis.conf,
# Nchan's own scale-out), each pair on a fresh redis-server of its own (a free
# port, a temporary directory, no persistence), subscribers split over the two
# nodes, every event published on the first. The CPU counted is the sum over
# both nodes and redis-server. Each side runs ROUNDS_REDIS times (default 2),
# alternating, and the tables show medians and every round. Their tables go
# between the redis markers of docs/benchmarks.md, whatever ONLY says.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)"

QUICK=${QUICK:-0}
ONLY=${ONLY:-}
OUT=${OUT:-docs/benchmarks.md}
if [ ! -e /usr/share/nginx/modules/ngx_nchan_module.so ]; then
  echo "== installing nginx and libnginx-mod-nchan"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx libnginx-mod-nchan
fi
cargo build --release -p tandem --bin tandem -p tandem-bench --bin loadgen

work=$(mktemp -d)
results="$work/results.txt"
server_pid=""
cluster_pids=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  for p in $cluster_pids; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "server on port $1 did not start" >&2
  return 1
}

start_server() { # $1 = tandem|nchan [$2 = tandem worker threads]; sets port, server_pid
  port=$(free_port)
  if [ "$1" = tandem ]; then
    RUST_LOG=warn target/release/tandem serve --listen "127.0.0.1:$port" --threads "${2:-1}" \
      --buffer-events 1000 --max-connections 20000 --stream-padding 0 >"$work/tandem.log" 2>&1 &
    server_pid=$!
  else
    mkdir -p "$work/nchan"
    sed -e "s#@DIR@#$work/nchan#g" -e "s#@PORT@#$port#g" benches/nchan.conf >"$work/nchan/nginx.conf"
    nginx -c "$work/nchan/nginx.conf" >"$work/nchan/out.log" 2>&1 &
    server_pid=$!
  fi
  wait_port "$port"
}

stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

# urls SERVER TRANSPORT -> "sub-template publish-template accept mode"
urls() {
  local b="http://127.0.0.1:$port"
  if [ "$1" = tandem ]; then
    case $2 in
      sse) echo "$b/ch/{ch}/sse $b/ch/{ch} */* stream" ;;
      multipart) echo "$b/ch/{ch}/mixed $b/ch/{ch} */* stream" ;;
      poll) echo "$b/ch/{ch}/poll $b/ch/{ch} */* poll" ;;
    esac
  else
    case $2 in
      sse) echo "$b/sse/{ch} $b/pub/{ch} text/event-stream stream" ;;
      multipart) echo "$b/multipart/{ch} $b/pub/{ch} multipart/mixed stream" ;;
      poll) echo "$b/poll/{ch} $b/pub/{ch} */* poll" ;;
    esac
  fi
}

scale() { # full quick
  if [ "$QUICK" = 1 ]; then echo "$2"; else echo "$1"; fi
}

# run SERVER THREADS TRANSPORT LABEL LOADGEN-ARGS...: one fresh server, one
# load generator run against it, its RESULT line kept; the server stopped.
run() {
  local server=$1 threads=$2 transport=$3 label=$4
  shift 4
  start_server "$server" "$threads"
  read -r sub pub accept mode <<<"$(urls "$server" "$transport")"
  echo "== $label"
  output=$(target/release/loadgen --sub "$sub" --publish "$pub" --accept "$accept" --mode "$mode" \
    --pid "$server_pid" --label "$label" "$@" 2>&1 || true)
  echo "$output"
  grep '^RESULT' <<<"$output" >>"$results" || true
  stop_server
}

# start_redis: a fresh redis-server of our own (never the system service) on a
# free port, in an empty directory, without persistence; sets redis_port, redis_pid.
start_redis() {
  redis_port=$(free_port)
  local dir="$work/redis-$redis_port"
  mkdir -p "$dir"
  redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$dir" --save "" --appendonly no \
    --daemonize no --protected-mode no --logfile "$dir/redis.log" &
  redis_pid=$!
  cluster_pids="$cluster_pids $redis_pid"
  wait_port "$redis_port"
}

# start_node SERVER INDEX: one node on the Redis of start_redis; sets port, node_pid.
start_node() {
  port=$(free_port)
  if [ "$1" = tandem ]; then
    RUST_LOG=warn target/release/tandem serve --listen "127.0.0.1:$port" --threads 1 \
      --redis "redis://127.0.0.1:$redis_port/0" \
      --buffer-events 1000 --max-connections 20000 --stream-padding 0 >"$work/tandem-$2.log" 2>&1 &
    node_pid=$!
  else
    local dir="$work/nchan-$2"
    mkdir -p "$dir"
    sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$port#g" -e "s#@REDIS_PORT@#$redis_port#g" \
      benches/nchan-redis.conf >"$dir/nginx.conf"
    nginx -c "$dir/nginx.conf" >"$dir/out.log" 2>&1 &
    node_pid=$!
  fi
  cluster_pids="$cluster_pids $node_pid"
  wait_port "$port"
}

stop_cluster() {
  local p
  for p in $cluster_pids; do kill "$p" 2>/dev/null || true; done
  for p in $cluster_pids; do wait "$p" 2>/dev/null || true; done
  cluster_pids=""
}

# run_cluster SERVER TRANSPORT LABEL LOADGEN-ARGS...: a fresh redis-server, two
# nodes on it, subscribers split over both, publishes on node 1; CPU summed
# over node 1, node 2 and redis-server (in that order in server_cpu_each).
run_cluster() {
  local server=$1 transport=$2 label=$3
  shift 3
  start_redis
  start_node "$server" 1
  local pid1=$node_pid
  read -r sub1 pub accept mode <<<"$(urls "$server" "$transport")"
  start_node "$server" 2
  local pid2=$node_pid
  read -r sub2 _ _ _ <<<"$(urls "$server" "$transport")"
  echo "== $label"
  local load0 load1
  load0=$(cut -d' ' -f1 /proc/loadavg)
  output=$(target/release/loadgen --sub "$sub1" --sub "$sub2" --publish "$pub" --accept "$accept" --mode "$mode" \
    --pid "$pid1" --pid "$pid2" --pid "$redis_pid" --label "$label" "$@" 2>&1 || true)
  load1=$(cut -d' ' -f1 /proc/loadavg)
  echo "$output"
  grep '^RESULT' <<<"$output" | sed "s/\$/ load_before=$load0 load_after=$load1/" >>"$results" || true
  stop_cluster
}

# cluster NAME TRANSPORT LOADGEN-ARGS...: ROUNDS_REDIS rounds of two tandem
# nodes on Redis, then two Nchan nodes on Redis.
ROUNDS_REDIS=${ROUNDS_REDIS:-2}
redis_partial=0
cluster() {
  local name=$1 transport=$2
  shift 2
  if skip "$name"; then
    redis_partial=1
    return
  fi
  for _ in $(seq "$ROUNDS_REDIS"); do
    for server in tandem nchan; do run_cluster "$server" "$transport" "$name/$server" "$@"; done
  done
}

# skip NAME: whether ONLY= leaves this scenario out.
skip() { [ -n "$ONLY" ] && ! [[ $1 =~ $ONLY ]]; }

# scenario NAME TRANSPORT LOADGEN-ARGS...: tandem (one worker thread), then Nchan.
scenario() {
  local name=$1 transport=$2
  shift 2
  if skip "$name"; then return; fi
  for server in tandem nchan; do run "$server" 1 "$transport" "$name/$server" "$@"; done
}

# rounds N NAME TRANSPORT LOADGEN-ARGS...: the scenario N times, the servers
# alternating (tandem, Nchan, tandem, ...); the table shows each figure's
# median over the rounds. For short, noisy figures (single runs of the
# publish rate vary by 10 to 30% on a shared VM).
rounds() {
  local n=$1
  shift
  for _ in $(seq "$n"); do scenario "$@"; done
}

# scaling NAME TRANSPORT LOADGEN-ARGS...: tandem alone, one worker thread then two.
scaling() {
  local name=$1 transport=$2
  shift 2
  if skip "$name"; then return; fi
  for threads in 1 2; do run tandem "$threads" "$transport" "$name/threads-$threads" "$@"; done
}

K1=$(scale 1000 200)
K10=$(scale 10000 1000)
scenario fanout-1k-sse sse --subscribers "$K1" --events "$(scale 1000 100)" --timeout 60
scenario fanout-1k-multipart multipart --subscribers "$K1" --events "$(scale 1000 100)" --timeout 60
scenario fanout-1k-poll poll --subscribers "$K1" --events "$(scale 200 50)" --rate 100 --timeout 60
scenario fanout-10k-sse sse --subscribers "$K10" --events "$(scale 200 50)" --timeout 90
scenario fanout-10k-multipart multipart --subscribers "$K10" --events "$(scale 200 50)" --timeout 90
scenario fanout-10k-poll poll --subscribers "$K10" --events "$(scale 50 10)" --rate 10 --timeout 90
scenario saturated-10k-sse sse --subscribers "$K10" --events "$(scale 300 50)" --rate 100 --timeout 90
# The same publish rate for both, one that Nchan sustains at 10,000 subscribers.
scenario latency-10k-sse-5eps sse --subscribers "$K10" --events "$(scale 50 10)" --rate 5 --timeout 90
scenario channels-1000x5-sse sse --subscribers "$(scale 5000 500)" --channels "$(scale 1000 100)" --events "$(scale 20 5)" --timeout 90
scenario idle-10k-sse sse --subscribers "$K10" --idle 5
rounds "$(scale 9 1)" publish-0-subscribers sse --subscribers 0 --events "$(scale 50000 2000)" --publishers 4 --timeout 60
rounds "$(scale 5 1)" publish-100-subscribers sse --subscribers 100 --events "$(scale 5000 500)" --publishers 4 --timeout 60
scenario latency-1k-sse-100eps sse --subscribers "$K1" --events "$(scale 500 100)" --rate 100 --timeout 60
scaling scaling-10k-sse sse --subscribers "$K10" --events "$(scale 300 50)" --timeout 90
# Two nodes on one Redis (issue 11): tandem --redis against Nchan's Redis storage.
cluster redis-fanout-1k-sse sse --subscribers "$K1" --events "$(scale 1000 100)" --timeout 90
cluster redis-fanout-10k-sse sse --subscribers "$K10" --events "$(scale 200 50)" --timeout 120
# The same publish rate for both, one that two Nchan nodes sustain: latency compared at equal load.
cluster redis-latency-1k-sse-50eps sse --subscribers "$K1" --events "$(scale 500 100)" --rate 50 --timeout 90
cluster redis-latency-10k-sse-5eps sse --subscribers "$K10" --events "$(scale 50 10)" --rate 5 --timeout 120

python3 - "$results" "$work/tables.md" "$QUICK" "$work/redis.md" <<'PY'
import sys, platform, subprocess, datetime
results, out, quick, redis_out = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
runs = {}
for line in open(results):
    if not line.startswith("RESULT"):
        continue
    kv = dict(p.split("=", 1) for p in line.split()[1:])
    name, server = kv["label"].split("/")
    runs.setdefault(name, {}).setdefault(server, []).append(kv)

def median(values):
    nums = sorted(float(v) for v in values)
    mid = len(nums) // 2
    return nums[mid] if len(nums) % 2 else (nums[mid - 1] + nums[mid]) / 2

def merge(rounds):
    """One run as it is; several: the median of each numeric figure."""
    if len(rounds) == 1:
        return rounds[0]
    out = {"rounds": str(len(rounds))}
    for k in rounds[0]:
        vals = [r.get(k) for r in rounds]
        try:
            out[k] = f"{median(vals):.3f}"
        except (TypeError, ValueError):
            out[k] = vals[0]
    return out

def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None

def fmt(v):
    n = num(v)
    if n is None or n != n:
        return v or "n/a"
    if n == int(n):
        return f"{int(n):,}"
    return f"{n:,.2f}"

def ratio(t, n):
    t, n = num(t), num(n)
    if t is None or n is None or n == 0 or t != t or n != n:
        return "n/a"
    return f"{t / n:.2f}"

cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
lines = [
    "# Benchmarks: tandem vs Nchan",
    "",
    f"Written by `benches/compare.sh` on {datetime.date.today()}{' (QUICK=1 smoke run: small numbers, not for comparison)' if quick else ''}.",
    f"Machine: {cpu}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores, Linux {platform.release()}.",
    "Both servers ran on one core (tandem `--threads 1`; nginx with one process and Nchan's memory store, `benches/nchan.conf`);",
    "the load generator (`benches/loadgen.rs`, one thread) ran on the other. Loopback only.",
    "Ratio = tandem / Nchan (for scaling: two worker threads / one). See the notes below the tables for what each figure means.",
    "The proxy's pass-through overhead (`benches/proxy.sh`: a small web application directly and through `tandem serve --upstream`) is in the last section, [Proxy pass-through](#proxy-pass-through).",
    "",
]
keys = [
    ("rounds", "rounds (figures are medians)"),
    ("expected", "deliveries expected"),
    ("received", "deliveries received"),
    ("lost", "lost"),
    ("duplicated", "duplicated"),
    ("publish_rate", "publishes per second"),
    ("deliveries_per_sec", "deliveries per second"),
    ("p50_ms", "latency p50 (ms)"),
    ("p90_ms", "latency p90 (ms)"),
    ("p99_ms", "latency p99 (ms)"),
    ("max_ms", "latency max (ms)"),
    ("server_cpu_secs", "server CPU seconds"),
    ("deliveries_per_cpu_sec", "deliveries per server CPU-second"),
    ("server_rss_kib", "server RSS at the end (KiB)"),
    ("idle_connections", "idle connections held"),
    ("kib_per_connection", "KiB per idle connection"),
]
redis_lines = [
    f"Written by `benches/compare.sh` on {datetime.date.today()}{' (QUICK=1 smoke run: small numbers, not for comparison)' if quick else ''}"
    f" ({datetime.datetime.now(datetime.timezone.utc).strftime('%H:%M')} UTC).",
    f"Machine: {cpu}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores, Linux {platform.release()}.",
    "",
]

def each(rounds, k, f=lambda v: fmt(v)):
    return ", ".join(f(r.get(k)) for r in rounds)

for name, pair in runs.items():
    if name.startswith("redis-"):
        # Two nodes on one Redis: medians, then every round, then where the CPU went.
        rounds = pair
        pair = {server: merge(r) for server, r in rounds.items()}
        t, n = pair.get("tandem", {}), pair.get("nchan", {})
        rt, rn = rounds.get("tandem", []), rounds.get("nchan", [])
        redis_lines += [f"### {name}", "", "| figure | tandem x2 on Redis | Nchan x2 on Redis | ratio |", "|---|---:|---:|---:|"]
        for k, label in keys:
            if k in ("server_cpu_secs", "deliveries_per_cpu_sec", "server_rss_kib"):
                label = label.replace("server", "servers + Redis")
            if k in t or k in n:
                redis_lines.append(f"| {label} | {fmt(t.get(k))} | {fmt(n.get(k))} | {ratio(t.get(k), n.get(k))} |")
        redis_lines += [
            f"| each round: deliveries per CPU-second | {each(rt, 'deliveries_per_cpu_sec')} | {each(rn, 'deliveries_per_cpu_sec')} | |",
            f"| each round: p99 (ms) | {each(rt, 'p99_ms')} | {each(rn, 'p99_ms')} | |",
            f"| each round: CPU s of node 1 (publishes), node 2, Redis | {'; '.join(r.get('server_cpu_each', 'n/a').replace(',', ' / ') for r in rt)} | {'; '.join(r.get('server_cpu_each', 'n/a').replace(',', ' / ') for r in rn)} | |",
            f"| each round: load average (1 min) before / after | {'; '.join(r.get('load_before', '?') + ' / ' + r.get('load_after', '?') for r in rt)} | {'; '.join(r.get('load_before', '?') + ' / ' + r.get('load_after', '?') for r in rn)} | |",
            "",
        ]
        continue
    pair = {server: merge(rounds) for server, rounds in pair.items()}
    if name.startswith("scaling"):
        t, n = pair.get("threads-2", {}), pair.get("threads-1", {})
        lines += [f"## {name}", "", "| figure | tandem, 2 threads | tandem, 1 thread | ratio |", "|---|---:|---:|---:|"]
    else:
        t, n = pair.get("tandem", {}), pair.get("nchan", {})
        lines += [f"## {name}", "", "| figure | tandem | Nchan | ratio |", "|---|---:|---:|---:|"]
    for k, label in keys:
        if k in t or k in n:
            lines.append(f"| {label} | {fmt(t.get(k))} | {fmt(n.get(k))} | {ratio(t.get(k), n.get(k))} |")
    lines.append("")
open(out, "w").write("\n".join(lines))
if any(name.startswith("redis-") for name in runs):
    open(redis_out, "w").write("\n".join(redis_lines))
PY

# The two-nodes-on-Redis tables go between their markers in $OUT (outside
# QUICK runs) when all of them ran, whether or not the rest did.
if [ -f "$work/redis.md" ]; then
  cat "$work/redis.md"
  if [ "$QUICK" != 1 ] && [ "$redis_partial" = 0 ] && grep -q '^<!-- redis:begin -->' "$OUT"; then
    python3 - "$OUT" "$work/redis.md" <<'PY'
import sys
out, new = sys.argv[1], open(sys.argv[2]).read()
doc = open(out).read()
head, rest = doc.split("<!-- redis:begin -->\n", 1)
_, tail = rest.split("<!-- redis:end -->", 1)
open(out, "w").write(head + "<!-- redis:begin -->\n" + new + "\n<!-- redis:end -->" + tail)
PY
    echo "== wrote the redis section of $OUT"
  fi
fi
if [ -n "$ONLY" ]; then
  if grep -q '^## ' "$work/tables.md"; then cat "$work/tables.md"; fi
  exit 0
fi
# Keep the hand-written notes (everything from "## Notes" on, which includes
# the section benches/proxy.sh writes at the end) and replace the tables.
notes=""
if [ -f "$OUT" ] && grep -q '^## Notes' "$OUT"; then
  notes=$(sed -n '/^## Notes/,$p' "$OUT")
fi
{ cat "$work/tables.md"; [ -n "$notes" ] && printf '\n%s\n' "$notes"; } >"$OUT.new"
mv "$OUT.new" "$OUT"
echo "== wrote $OUT"
