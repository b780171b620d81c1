#!/usr/bin/env bash
# The proxy's pass-through overhead: the same requests to a small web
# application directly and through `tandem serve --upstream`, on this
# machine, in one session.
#
#   bash benches/proxy.sh              # full run (about 4 minutes), writes the
#                                      # "Proxy pass-through" section of docs/benchmarks.md
#   QUICK=1 bash benches/proxy.sh      # short runs, one round: a smoke test of the script
#   ONLY=download bash benches/proxy.sh  # only the scenarios whose name matches
#                                        # (table printed, docs/ left alone)
#   ROUNDS=9 bash benches/proxy.sh     # more alternating rounds (default 5)
#
# It starts bench-upstream (benches/upstream.rs) and tandem in front of it
# (release build, one worker thread), both pinned to the first core, and
# runs httpload (benches/httpload.rs) pinned to the second: each scenario
# against the upstream directly, then through tandem, in alternating rounds;
# the table shows each figure's median. Only the section between the
# markers <!-- proxy:begin --> and <!-- proxy:end --> is replaced (appended
# when missing); benches/compare.sh keeps it (it is below "## Notes").
# Everything listens on 127.0.0.1; every run is bounded in time and count;
# both servers are stopped by PID at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
ONLY=${ONLY:-}
ROUNDS=${ROUNDS:-5}
OUT=${OUT:-docs/benchmarks.md}
if [ "$QUICK" = 1 ]; then ROUNDS=1; fi
scale() { # full quick
  if [ "$QUICK" = 1 ]; then echo "$2"; else echo "$1"; fi
}

cargo build --release -p tandem --bin tandem -p tandem-bench --bin httpload --bin bench-upstream
bin=${CARGO_TARGET_DIR:-target}/release

# Servers on the first core, the load generator on the second (when there
# are two): the upstream's and the proxy's work add up on one core, so
# "through tandem" pays for both, as a deployment on one box would.
if [ "$(nproc)" -ge 2 ]; then
  server_cpus=0
  client_cpus=1
  pin_server=(taskset -c "$server_cpus")
  pin_client=(taskset -c "$client_cpus")
else
  server_cpus=all
  client_cpus=all
  pin_server=()
  pin_client=()
fi

work=$(mktemp -d)
results="$work/results.txt"
upstream_pid=""
tandem_pid=""
cleanup() {
  for pid in $tandem_pid $upstream_pid; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
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

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
uport=$(free_port)
"${pin_server[@]}" "$bin/bench-upstream" --listen "127.0.0.1:$uport" >"$work/upstream.log" 2>&1 &
upstream_pid=$!
wait_port "$uport"
tport=$(free_port)
RUST_LOG=warn "${pin_server[@]}" "$bin/tandem" serve --listen "127.0.0.1:$tport" --threads 1 \
  --upstream "http://127.0.0.1:$uport" >"$work/tandem.log" 2>&1 &
tandem_pid=$!
wait_port "$tport"
direct="http://127.0.0.1:$uport"
proxied="http://127.0.0.1:$tport"

# What each answer must be, learnt once and checked by every later answer:
# directly, the upstream's bytes; through tandem, the same bytes but for
# the HTML page, which gets the co-browsing scripts (a fixed length: the
# nonce is always 24 characters).
curl -sf --max-time 10 "$direct/small" >"$work/small.direct"
curl -sf --max-time 10 "$proxied/small" >"$work/small.proxied"
grep -q '/_tandem/cobrowse.js' "$work/small.proxied" || { echo "no script injected through tandem" >&2; exit 1; }
for path in small.txt big; do
  curl -sf --max-time 30 "$direct/$path" >"$work/$path.direct"
  curl -sf --max-time 30 "$proxied/$path" | cmp -s - "$work/$path.direct" ||
    { echo "/$path through tandem differs from the upstream's" >&2; exit 1; }
done
len() { wc -c <"$1" | tr -d ' '; }
html_direct=$(len "$work/small.direct")
html_proxied=$(len "$work/small.proxied")
txt_len=$(len "$work/small.txt.direct")
big_len=$(len "$work/big.direct")
rm -f "$work/big.direct"

upstream_connections() {
  curl -sf --max-time 5 "$direct/stats" | sed -n 's/.*connections=\([0-9]*\).*/\1/p'
}

# run SCENARIO TARGET(direct|tandem) HTTPLOAD-ARGS...: one httpload run, its
# RESULT line kept with the upstream connections opened during it.
run() {
  local name=$1 target=$2
  shift 2
  local before after output
  before=$(upstream_connections)
  output=$("${pin_client[@]}" "$bin/httpload" --label "$name/$target" \
    --pid "tandem=$tandem_pid" --pid "upstream=$upstream_pid" "$@" 2>&1 || true)
  after=$(upstream_connections)
  echo "$output"
  if line=$(grep '^RESULT' <<<"$output"); then
    # Minus the connection of the second /stats request itself.
    echo "$line upstream_connections=$((after - before - 1))" >>"$results"
  else
    echo "RESULT label=$name/$target failed=1" >>"$results"
  fi
}

skip() { [ -n "$ONLY" ] && ! [[ $1 =~ $ONLY ]]; }

# scenario NAME PATH "DIRECT-ARGS" "TANDEM-ARGS" HTTPLOAD-ARGS...: directly, then through tandem.
scenario() {
  local name=$1 path=$2 dargs=$3 targs=$4
  shift 4
  if skip "$name"; then return; fi
  echo "== $name"
  # shellcheck disable=SC2086 # the per-target arguments are words
  run "$name" direct --url "$direct$path" $dargs "$@"
  # shellcheck disable=SC2086
  run "$name" tandem --url "$proxied$path" $targs "$@"
}

secs=$(scale 4 1)
warm=$(scale 1 0.5)
html_direct_args="--expect-len $html_direct --expect-contains </html>"
html_tandem_args="--expect-len $html_proxied --expect-contains /_tandem/cobrowse.js"
txt_args="--expect-len $txt_len"
for round in $(seq "$ROUNDS"); do
  echo "=== round $round of $ROUNDS"
  scenario small-html-50 /small "$html_direct_args" "$html_tandem_args" \
    --connections 50 --warmup "$warm" --duration "$secs"
  scenario small-txt-50 /small.txt "$txt_args" "$txt_args" \
    --connections 50 --warmup "$warm" --duration "$secs"
  scenario small-html-20 /small "$html_direct_args" "$html_tandem_args" \
    --connections 20 --warmup "$warm" --duration "$secs"
  scenario small-html-1 /small "$html_direct_args" "$html_tandem_args" \
    --connections 1 --warmup "$warm" --duration "$secs"
  scenario download-1 /big "--expect-len $big_len" "--expect-len $big_len" \
    --mode download --times "$(scale 40 5)" --connections 1 --timeout 120
  scenario download-4 /big "--expect-len $big_len" "--expect-len $big_len" \
    --mode download --times "$(scale 40 8)" --connections 4 --timeout 120
done

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$results" "$work/section.md" "$QUICK" "$ROUNDS" "$server_cpus" "$client_cpus" \
  "$html_direct" "$html_proxied" "$load_before" "$load_after" <<'PY'
import sys, platform, subprocess, datetime
results, out, quick, rounds, server_cpus, client_cpus, html_direct, html_proxied, load_before, load_after = sys.argv[1:11]
quick = quick == "1"
runs = {}
for line in open(results):
    kv = dict(p.split("=", 1) for p in line.split()[1:])
    name, target = kv["label"].split("/")
    runs.setdefault(name, {}).setdefault(target, []).append(kv)

def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None

def median(rs, k):
    vals = sorted(x for x in (num(r.get(k)) for r in rs) if x is not None and x == x)
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2

def total(rs, k):
    return sum(num(r.get(k)) or 0 for r in rs)

def fmt(n, digits=2):
    if n is None:
        return "n/a"
    if abs(n) >= 100 or n == int(n):
        return f"{n:,.0f}"
    return f"{n:,.{digits}f}"

def ratio(t, d):
    return "n/a" if t is None or not d else f"{t / d:.2f}x"

def added(t, d, unit):
    return "n/a" if t is None or d is None else f"{t - d:+,.2f} {unit}"

titles = {
    "small-html-50": f"`/small`, {int(html_direct):,}-byte HTML page (through tandem: {int(html_proxied):,} bytes, scripts injected), 50 connections",
    "small-txt-50": "`/small.txt`, 2,048 bytes of text/plain (passed through), 50 connections",
    "small-html-20": "`/small`, HTML page, 20 connections",
    "small-html-1": "`/small`, HTML page, 1 connection (one request at a time)",
    "download-1": "`/big`, 10 MB download, one at a time",
    "download-4": "`/big`, 10 MB download, 4 at a time",
}
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
ncpu = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
lines = [
    "<!-- proxy:begin -->",
    "## Proxy pass-through",
    "",
    f"Written by `benches/proxy.sh` on {datetime.date.today()}{' (QUICK=1 smoke run: short runs, not for comparison)' if quick else ''}:"
    + (" one round (direct, then through tandem, for each scenario)." if rounds == "1" else
       f" {rounds} alternating rounds (direct, through tandem, for each scenario), each figure the median of its rounds."),
    f"Machine: {cpu}, {ncpu} cores, Linux {platform.release()};"
    f" load average (1, 5, 15 minutes) {load_before} before the run and {load_after} after it.",
    f"Servers on CPU {server_cpus}: `bench-upstream` (`benches/upstream.rs`, hyper, one thread) and, for \"through tandem\","
    " `tandem serve --threads 1 --upstream http://127.0.0.1:UPORT` in front of it (release build),"
    f" so the two share one core; the load generator `httpload` (`benches/httpload.rs`, one thread) on CPU {client_cpus}. Loopback only.",
    "Every answer was checked (status, body length, and for the page a text it must hold); \"wrong\" counts wrong,"
    " broken and unanswered ones.",
    "",
    "| scenario | figure | direct | through tandem | tandem vs direct |",
    "|---|---|---:|---:|---:|",
]
for name, pair in runs.items():
    d, t = pair.get("direct", []), pair.get("tandem", [])
    title = titles.get(name, name)
    rows = []
    if any(r.get("failed") for r in d + t):
        rows.append(("run failed", "see the script's output", "", ""))
    dl = name.startswith("download")
    if dl:
        for k, label in [("mb_per_sec", "MB/s, all downloads"), ("mb_per_sec_each_p50", "MB/s, one download (median)")]:
            a, b = median(d, k), median(t, k)
            rows.append((label, fmt(a), fmt(b), ratio(b, a)))
        for k, label in [("ttfb_p50_ms", "time to first byte, p50 (ms)"), ("ttlb_p50_ms", "time to last byte, p50 (ms)"), ("ttlb_max_ms", "time to last byte, max (ms)")]:
            a, b = median(d, k), median(t, k)
            rows.append((label, fmt(a), fmt(b), added(b, a, "ms")))
        for who in ["tandem", "upstream", "self"]:
            k = f"cpu_ms_per_mb_{who}"
            a, b = median(d, k), median(t, k)
            label = {"tandem": "tandem CPU ms per MB", "upstream": "upstream CPU ms per MB", "self": "load generator CPU ms per MB"}[who]
            if who == "tandem":
                rows.append((label, "", fmt(b, 3), ""))
            else:
                rows.append((label, fmt(a, 3), fmt(b, 3), ratio(b, a)))
    else:
        a, b = median(d, "rps"), median(t, "rps")
        rows.append(("requests/s", fmt(a), fmt(b), ratio(b, a)))
        for k, label in [("p50_ms", "latency p50 (ms)"), ("p90_ms", "latency p90 (ms)"), ("p99_ms", "latency p99 (ms)"), ("max_ms", "latency max (ms)")]:
            a, b = median(d, k), median(t, k)
            rows.append((label, fmt(a, 3), fmt(b, 3), added(b, a, "ms")))
        a, b = median(t, "cpu_us_per_answer_tandem"), None
        rows.append(("tandem CPU µs per request", "", fmt(a, 1), ""))
        for who, label in [("upstream", "upstream CPU µs per request"), ("self", "load generator CPU µs per request")]:
            a, b = median(d, f"cpu_us_per_answer_{who}"), median(t, f"cpu_us_per_answer_{who}")
            rows.append((label, fmt(a, 1), fmt(b, 1), ratio(b, a)))
    a, b = median(d, "upstream_connections"), median(t, "upstream_connections")
    rows.append(("upstream connections opened (median per run)", fmt(a), fmt(b), ""))
    a, b = total(d, "checked"), total(t, "checked")
    wa, wb = total(d, "wrong"), total(t, "wrong")
    rows.append(("answers checked / wrong, all rounds", f"{a:,.0f} / {wa:,.0f}", f"{b:,.0f} / {wb:,.0f}", ""))
    for i, (label, x, y, z) in enumerate(rows):
        lines.append(f"| {title if i == 0 else ''} | {label} | {x} | {y} | {z} |")
lines += ["", "<!-- proxy:end -->"]
open(out, "w").write("\n".join(lines) + "\n")
PY

if [ -n "$ONLY" ]; then
  cat "$work/section.md"
  exit 0
fi
# Replace the marked section; append it when the markers are missing.
python3 - "$OUT" "$work/section.md" <<'PY'
import sys
path, section = sys.argv[1], open(sys.argv[2]).read()
try:
    doc = open(path).read()
except FileNotFoundError:
    doc = ""
begin, end = "<!-- proxy:begin -->", "<!-- proxy:end -->"
if begin in doc and end in doc:
    a, b = doc.index(begin), doc.index(end) + len(end)
    doc = doc[:a] + section.rstrip("\n") + doc[b:]
else:
    doc = (doc.rstrip("\n") + "\n\n" if doc.strip() else "") + section
open(path + ".new", "w").write(doc)
PY
mv "$OUT.new" "$OUT"
cat "$work/section.md"
echo "== wrote the proxy section of $OUT"
