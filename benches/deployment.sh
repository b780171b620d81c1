#!/usr/bin/env bash
# tandem behind the usual reverse proxies and load balancers, each started
# from the configs in benches/deployment/ and checked and measured.
#
#   bash benches/deployment.sh            # every proxy (about 16 minutes); prints the
#                                         # table and writes it into docs/deployment.md
#   QUICK=1 bash benches/deployment.sh    # fewer events: a smoke test of the script
#   ONLY=haproxy bash benches/deployment.sh   # only the setups whose name matches
#                                             # (table printed, docs/ left alone)
#
# It starts its own redis-server (temp dir, free port) and two tandem nodes
# on it (`--redis`), then, one setup at a time, a proxy in front of them:
# haproxy (balancing over both nodes, with and without `option
# http-no-delay`, sticky or not), Apache httpd (mod_proxy_http, mod_deflate),
# Varnish (pass, pipe, built-in VCL), Apache Traffic Server (with and without
# pristine_host_hdr) and lighttpd (with and without
# server.stream-response-body). The packages are Debian's (`apt-get install
# haproxy apache2 varnish trafficserver lighttpd`, installed here when
# missing); they are benchmark tools, not test dependencies. Every server runs
# in the foreground on a free 127.0.0.1 port from a config in a temp dir,
# never a system service, and is stopped by its PID.
#
# For each setup and transport (SSE, multipart/x-mixed-replace,
# multipart/mixed, forever iframe, long-poll) it first checks that an event
# published through the proxy arrives within a second; if it does,
# benches/loadgen.rs measures SUBS subscribers through the proxy receiving
# EVENTS events published through the proxy at RATE per second (p50/p99 from
# publish to delivery), and one SSE subscriber receiving SLOW_EVENTS events
# at 4 per second (where holding shows: a proxy that waits for more data
# before sending holds each event). It also sends a browser-style publish
# (`Origin` = the proxy's own address) and notes the status. Apache's
# compression is checked with benches/deployment/gzprobe.py.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
ONLY=${ONLY:-}
OUT=${OUT:-docs/deployment.md}
SUBS=${SUBS:-4}
EVENTS=${EVENTS:-300}
RATE=${RATE:-50}
SLOW_EVENTS=${SLOW_EVENTS:-20}
if [ "$QUICK" = 1 ]; then EVENTS=50; SLOW_EVENTS=8; fi

need=()
command -v haproxy >/dev/null || need+=(haproxy)
command -v apache2 >/dev/null || need+=(apache2)
command -v varnishd >/dev/null || need+=(varnish)
command -v traffic_server >/dev/null || need+=(trafficserver)
command -v lighttpd >/dev/null || need+=(lighttpd)
command -v redis-server >/dev/null || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
cargo build --release -p tandem --bin tandem -p tandem-bench --bin loadgen
bin=${CARGO_TARGET_DIR:-target}/release
confs=benches/deployment

work=$(mktemp -d)
chmod 755 "$work"
results="$work/results.txt"
notes="$work/notes.txt"
: >"$results"
: >"$notes"
pids=()     # redis and the tandem nodes
proxy_pid=""
stop_pid() { # PID: SIGTERM, wait up to 10 s, then SIGKILL (that PID only)
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  if [ -n "$proxy_pid" ]; then stop_pid "$proxy_pid"; fi
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[i]}"; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2
  return 1
}
# render TEMPLATE OUT KEY=VALUE...: the template with each @KEY@ replaced.
render() {
  local src=$1 dst=$2
  shift 2
  python3 - "$src" "$dst" "$@" <<'PY'
import sys
src, dst, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
s = open(src).read()
for p in pairs:
    k, v = p.split("=", 1)
    s = s.replace("@" + k + "@", v)
open(dst, "w").write(s)
PY
}

# Redis and two tandem nodes on it.
redis_port=$(free_port)
mkdir -p "$work/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work/redis" \
  >"$work/redis/log" 2>&1 &
pids+=($!)
wait_port "$redis_port"
node1=$(free_port)
node2=$(free_port)
for p in "$node1" "$node2"; do
  RUST_LOG=warn "$bin/tandem" serve --listen "127.0.0.1:$p" --redis "redis://127.0.0.1:$redis_port/0" \
    --threads 1 --max-connections 4000 >"$work/tandem-$p.log" 2>&1 &
  pids+=($!)
  wait_port "$p"
done

# start_proxy SETUP: starts the proxy of that setup in front of node 1 (and
# node 2 for haproxy); sets port and proxy_pid. "direct" is node 1 itself.
start_proxy() {
  local setup=$1 d="$work/$1"
  mkdir -p "$d"
  chmod 755 "$d"
  port=$(free_port)
  case $setup in
    direct)
      port=$node1
      return 0
      ;;
    haproxy*)
      local nodelay="option http-no-delay" balance=roundrobin sticky="" c1="" c2=""
      if [ "$setup" = haproxy-no-http-no-delay ]; then nodelay="# option http-no-delay (left out)"; fi
      if [ "$setup" = haproxy-sticky ]; then
        balance=source
        sticky="cookie TANDEM_NODE insert indirect nocache"
        c1="cookie n1"
        c2="cookie n2"
      fi
      render "$confs/haproxy.cfg" "$d/haproxy.cfg" PORT="$port" UP1="$node1" UP2="$node2" DIR="$d" \
        NODELAY="$nodelay" BALANCE="$balance" STICKY="$sticky" COOKIE1="$c1" COOKIE2="$c2"
      haproxy -db -f "$d/haproxy.cfg" >"$d/out.log" 2>&1 &
      ;;
    apache*)
      local extra="# (no compression)" nogzip="# "
      case $setup in
        apache-gzip) extra="Include $d/deflate.conf" ;;
        apache-gzip-off) extra="Include $d/deflate.conf" nogzip="" ;;
      esac
      render "$confs/apache-deflate.conf" "$d/deflate.conf" NOGZIP="$nogzip"
      if [ "$setup" = apache-minimal ]; then
        # Nothing but ProxyPass: no flushpackets, no timeout, no ProxyPreserveHost.
        render "$confs/apache.conf" "$d/apache.conf.full" PORT="$port" UP1="$node1" DIR="$d" \
          USER=www-data GROUP=www-data EXTRA="$extra"
        sed -e 's#^\(ProxyPass .*/\) flushpackets=on timeout=150 keepalive=On#\1#' \
          -e 's#^ProxyPreserveHost On#ProxyPreserveHost Off#' "$d/apache.conf.full" >"$d/apache.conf"
      else
        render "$confs/apache.conf" "$d/apache.conf" PORT="$port" UP1="$node1" DIR="$d" \
          USER=www-data GROUP=www-data EXTRA="$extra"
      fi
      apache2 -DFOREGROUND -f "$d/apache.conf" >"$d/out.log" 2>&1 &
      ;;
    varnish*)
      local vcl="$confs/varnish.vcl" streams=pass timeout=150s
      case $setup in
        varnish-pipe) streams=pipe ;;
        varnish-builtin) vcl="$confs/varnish-builtin.vcl" ;;
        varnish-short-timeout) timeout=2s ;;
      esac
      render "$vcl" "$d/varnish.vcl" UP1="$node1" STREAMS="$streams" TIMEOUT="$timeout"
      varnishd -F -j none -n "$d/n" -a "127.0.0.1:$port" -f "$d/varnish.vcl" -s malloc,32m \
        -p pipe_timeout=150 >"$d/out.log" 2>&1 &
      ;;
    trafficserver*)
      local pristine=1
      if [ "$setup" = trafficserver-no-pristine ]; then pristine=0; fi
      mkdir -p "$d/etc" "$d/var" "$d/run" "$d/log" "$d/share" "$d/cache"
      # The package's stock files for everything not set here.
      cp -r /etc/trafficserver/. "$d/etc/"
      for f in records.config remap.config storage.config; do
        render "$confs/trafficserver/$f" "$d/etc/$f" PORT="$port" UP1="$node1" DIR="$d" PRISTINE="$pristine"
      done
      render "$confs/trafficserver/runroot.yaml" "$d/runroot.yaml" DIR="$d"
      traffic_server --run-root="$d/runroot.yaml" >"$d/out.log" 2>&1 &
      ;;
    lighttpd*)
      local stream=2
      if [ "$setup" = lighttpd-default ]; then stream=0; fi
      render "$confs/lighttpd.conf" "$d/lighttpd.conf" PORT="$port" UP1="$node1" DIR="$d" STREAM="$stream"
      lighttpd -D -f "$d/lighttpd.conf" >"$d/out.log" 2>&1 &
      ;;
    *)
      echo "unknown setup $setup" >&2
      return 1
      ;;
  esac
  proxy_pid=$!
  wait_port "$port"
  # Ready to forward (varnishd and traffic_server listen before they are).
  for _ in $(seq 50); do
    if curl -s -o /dev/null -m 2 "http://127.0.0.1:$port/healthz"; then break; fi
    sleep 0.1
  done
}

stop_proxy() {
  if [ -n "$proxy_pid" ]; then stop_pid "$proxy_pid"; fi
  proxy_pid=""
}

route() { # TRANSPORT -> path suffix
  case $1 in
    sse | multipart | mixed | iframe | poll) echo "$1" ;;
  esac
}

# flows TRANSPORT: whether one event published through the proxy reaches a
# subscriber through the proxy within a second.
flows() {
  local t=$1 ch="flow-$setup-$1-$RANDOM" out="$work/flow.out" cp
  local sub="http://127.0.0.1:$port/ch/$ch/$t"
  if [ "$t" = poll ]; then sub="$sub?timeout=3"; fi
  : >"$out"
  curl -sN -m 4 -o "$out" "$sub" &
  cp=$!
  sleep 0.4
  curl -s -o /dev/null -m 2 -X POST -H 'Content-Type: text/plain' --data-binary "flow-marker" \
    "http://127.0.0.1:$port/ch/$ch" || true
  for _ in $(seq 10); do
    if grep -q "flow-marker" "$out"; then break; fi
    sleep 0.1
  done
  stop_pid "$cp"
  grep -q "flow-marker" "$out"
}

# measure TRANSPORT EVENTS RATE SUBS LABEL: one loadgen run through the proxy.
measure() {
  local t=$1 n=$2 rate=$3 subs=$4 label=$5 mode=stream
  if [ "$t" = poll ]; then mode=poll; fi
  local out
  out=$("$bin/loadgen" --sub "http://127.0.0.1:$port/ch/{ch}/$t" --publish "http://127.0.0.1:$port/ch/{ch}" \
    --mode "$mode" --subscribers "$subs" --events "$n" --rate "$rate" --timeout 20 --label "$label" 2>&1 || true)
  echo "$out" | sed 's/^/    /'
  grep '^RESULT' <<<"$out" >>"$results" || echo "RESULT label=$label received=0 expected=$((n * subs)) failed=1" >>"$results"
}

# origin: a browser-style publish through the proxy (Origin = the proxy's
# own address, as a page served through it would send).
origin() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 -X POST -H "Origin: http://127.0.0.1:$port" \
    -H 'Content-Type: text/plain' --data-binary 'hello' "http://127.0.0.1:$port/ch/origin-check" || true)
  echo "RESULT label=$setup/origin status=$code" >>"$results"
  echo "  browser publish: $code"
}

note() {
  echo "  $*"
  echo "$setup: $*" >>"$notes"
}

skip() { [ -n "$ONLY" ] && ! [[ $1 =~ $ONLY ]]; }

# run_setup SETUP: the proxy, each transport checked then measured, the
# browser publish, and the setup's own checks.
run_setup() {
  setup=$1
  if skip "$setup"; then return; fi
  echo "== $setup"
  start_proxy "$setup"
  for t in sse multipart mixed iframe poll; do
    if flows "$t"; then
      measure "$t" "$EVENTS" "$RATE" "$SUBS" "$setup/$t"
    else
      echo "  $t: no event within a second"
      echo "RESULT label=$setup/$t held=1" >>"$results"
    fi
  done
  if flows sse; then
    measure sse "$SLOW_EVENTS" 4 1 "$setup/slow"
  fi
  origin
  extra_checks "$setup"
  stop_proxy
}

extra_checks() {
  case $1 in
    haproxy | haproxy-sticky)
      # Which node answers six polls from one browser (cookies kept)?
      local jar="$work/$1.jar" nodes=""
      rm -f "$jar"
      for _ in 1 2 3 4 5 6; do
        nodes+=$(curl -s -o /dev/null -D - -b "$jar" -c "$jar" -m 5 \
          "http://127.0.0.1:$port/ch/sticky/poll?timeout=0" | tr -d '\r' |
          awk -F': ' 'tolower($1)=="x-tandem-node"{printf "%s ", $2}')
      done
      note "six polls from one browser answered by: $nodes"
      ;;
    lighttpd-default)
      # The whole response, or nothing: a stream shows nothing, not even its head.
      local head
      head=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$port/ch/held/sse" || true)
      note "SSE through lighttpd's default: status seen within 2 s: ${head:-none} (000 = nothing)"
      ;;
    varnish-short-timeout)
      # A long-poll that holds longer than first_byte_timeout (2 s here).
      local code
      code=$(curl -s -o /dev/null -m 8 -w '%{http_code}' "http://127.0.0.1:$port/ch/quiet/poll?timeout=4" || true)
      note "a long-poll holding 4 s behind first_byte_timeout=2s: status $code"
      ;;
    varnish-builtin)
      # Two long-polls of the same URL at once: does the second wait for the first?
      local t0 t1
      t0=$(date +%s.%N)
      curl -s -o /dev/null -m 10 "http://127.0.0.1:$port/ch/coalesce/poll?timeout=3" &
      local a=$!
      sleep 0.2
      curl -s -o /dev/null -m 10 "http://127.0.0.1:$port/ch/coalesce/poll?timeout=3"
      t1=$(date +%s.%N)
      wait "$a" || true
      note "two identical 3 s long-polls sent together: the second answered after $(python3 -c "print(f'{$t1 - $t0:.1f}')") s"
      ;;
    apache-gzip | apache-gzip-off)
      local t line
      for t in sse iframe multipart; do
        line=$(python3 "$confs/gzprobe.py" "http://127.0.0.1:$port/ch/gz-$1-$t/$t" \
          "http://127.0.0.1:$node1/ch/gz-$1-$t" 30 0.05 || echo "GZPROBE failed")
        note "$t with Accept-Encoding gzip: $line"
        echo "RESULT label=$1/gz-$t $(sed 's/^GZPROBE //' <<<"$line")" >>"$results"
      done
      ;;
  esac
}

setups=(direct haproxy haproxy-no-http-no-delay haproxy-sticky apache apache-minimal apache-gzip
  apache-gzip-off varnish varnish-pipe varnish-builtin varnish-short-timeout trafficserver
  trafficserver-no-pristine lighttpd lighttpd-default)
for s in "${setups[@]}"; do run_setup "$s"; done

python3 - "$results" "$notes" "$work/table.md" "$QUICK" "$EVENTS" "$RATE" "$SUBS" "$SLOW_EVENTS" <<'PY'
import sys, platform, subprocess, datetime
results, notes, out, quick = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
events, rate, subs, slow = sys.argv[5:9]
rows = {}
for line in open(results):
    kv = dict(p.split("=", 1) for p in line.split()[1:])
    setup, what = kv["label"].split("/")
    rows.setdefault(setup, {})[what] = kv

def cell(kv):
    if kv is None:
        return "n/a"
    if kv.get("held") == "1":
        return "**held** (nothing in 1 s)"
    if kv.get("failed") == "1":
        return "failed"
    want = int(kv.get("expected", 0))
    lost, dup = int(kv.get("lost", want)), int(kv.get("duplicated", 0))
    if lost == want:
        return f"nothing ({want} lost)"
    s = f"{float(kv['p50_ms']):.1f} / {float(kv['p99_ms']):.1f}"
    if dup:
        # loadgen stops a subscriber once it has counted as many deliveries
        # as events, duplicates included: what it had not seen by then is
        # "unseen", not known lost.
        s += f" ({dup} dup., {lost} unseen)" if lost else f" ({dup} dup.)"
    elif lost:
        s += f" ({lost} of {want} lost)"
    return s

names = {
    "direct": "tandem directly",
    "haproxy": "haproxy, round robin over 2 nodes",
    "haproxy-no-http-no-delay": "haproxy without `http-no-delay`",
    "haproxy-sticky": "haproxy, sticky (cookie, else source address)",
    "apache": "Apache `mod_proxy_http`",
    "apache-minimal": "Apache, bare `ProxyPass`",
    "apache-gzip": "Apache + `mod_deflate`",
    "apache-gzip-off": "Apache + `mod_deflate`, `no-gzip` for /ch/",
    "varnish": "Varnish, `pass`",
    "varnish-pipe": "Varnish, `pipe`",
    "varnish-builtin": "Varnish, built-in VCL",
    "varnish-short-timeout": "Varnish, backend timeouts 2 s",
    "trafficserver": "Traffic Server, `pristine_host_hdr 1`",
    "trafficserver-no-pristine": "Traffic Server, default `pristine_host_hdr 0`",
    "lighttpd": "lighttpd, `stream-response-body 2`",
    "lighttpd-default": "lighttpd, default `stream-response-body 0`",
}
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
versions = subprocess.run(["sh", "-c",
    "dpkg-query -W -f='${Package} ${Version}\\n' haproxy apache2 varnish trafficserver lighttpd redis-server 2>/dev/null | tr '\\n' ';' | sed 's/;$//; s/;/, /g'"],
    capture_output=True, text=True).stdout.strip()
lines = [
    f"Measured by `benches/deployment.sh` on {datetime.date.today()}{' (QUICK=1 smoke run: few events)' if quick else ''}: "
    f"{cpu}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores shared with other work, Linux {platform.release()}, loopback; "
    f"{versions}. Two tandem nodes (release build, one worker thread each) on one redis-server; every proxy but haproxy in front of node 1.",
    "",
    f"Each cell: latency from publish to delivery, p50 / p99 in ms, {subs} subscribers through the proxy receiving {events} events "
    f"published through the proxy at {rate} per second (loadgen). \"slow SSE\": one subscriber, {slow} events at 4 per second, "
    "where a proxy that holds data waiting for more shows. \"browser publish\": the status of a `POST` with `Origin` set to the proxy's own address, "
    "as a page served through it sends.",
    "",
    "| through | SSE | multipart | mixed | iframe | long-poll | slow SSE | browser publish |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
]
for setup, r in rows.items():
    if setup not in names:
        continue
    status = r.get("origin", {}).get("status", "n/a")
    lines.append("| " + " | ".join([names[setup]] + [cell(r.get(t)) for t in ["sse", "multipart", "mixed", "iframe", "poll", "slow"]] + [status]) + " |")
lines.append("")
extra = [l.rstrip("\n") for l in open(notes) if l.strip()]
if extra:
    lines.append("Checks:")
    lines.append("")
    for l in extra:
        setup, _, text = l.partition(": ")
        lines.append(f"* {names.get(setup, setup)}: {text}")
    lines.append("")
open(out, "w").write("\n".join(lines))
PY

echo
cat "$work/table.md"
if [ -n "$ONLY" ] || [ "$QUICK" = 1 ]; then exit 0; fi
# Replace what is between the markers in docs/deployment.md (appended when
# missing).
python3 - "$OUT" "$work/table.md" <<'PY'
import sys
out, table = sys.argv[1], open(sys.argv[2]).read()
begin, end = "<!-- deployment:begin -->", "<!-- deployment:end -->"
doc = open(out).read()
block = f"{begin}\n{table}\n{end}"
if begin in doc and end in doc:
    doc = doc[: doc.index(begin)] + block + doc[doc.index(end) + len(end):]
else:
    doc = doc.rstrip("\n") + "\n\n" + block + "\n"
open(out, "w").write(doc)
PY
echo "== wrote $OUT"
