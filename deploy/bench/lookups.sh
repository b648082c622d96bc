#!/usr/bin/env bash
# Lookups over HTTP against the floor (README, "Lookup handler"): `featurepipe serve` with its
# default flags, the same with --lookup-log-sample 0 --ui=false, and the bare net/http server
# of `featurepipe load --baseline`, each driven by wrk (1 thread, 8 connections, one random
# key of USERS, the 7 features of lookup.lua), alternated ROUNDS times. Each run prints its
# req/s and p50, and the CPU time per request of its server and of `featurepipe dev`.
#
#   deploy/bench/lookups.sh                    # ROUNDS=3 USERS=5000 DURATION=10s
#
# Needs wrk (Debian: apt-get install wrk) and bin/featurepipe (make build). It starts
# `featurepipe dev` (embedded broker, worker, USERS users at 50 events/s) and the replicas on
# loopback ports 185xx, waits until both replicas answer and the processes are nearly idle
# (the dev history, the catch-up and the compactions take 1-3 minutes), and stops everything on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
USERS=${USERS:-5000}
DURATION=${DURATION:-10s}
BIN=${BIN:-bin/featurepipe}
command -v wrk >/dev/null || { echo "lookups.sh: wrk not found (apt-get install wrk)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "lookups.sh: $BIN not found (make build)" >&2; exit 1; }

dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

"$BIN" dev --users "$USERS" --rate 50 --listen 127.0.0.1:18580 --kafka 127.0.0.1:18592 --log-level warn >"$dir/dev.log" 2>&1 &
pids+=($!)
"$BIN" load --baseline-serve 127.0.0.1:18590 >"$dir/bare.log" 2>&1 &
pids+=($!)
for i in $(seq 1 100); do
  curl -sf -o /dev/null -XPOST 127.0.0.1:18580/v1/lookup -d '{"entity":"user","keys":["u0001"],"features":["txn_count_7d"]}' && break
  sleep 0.5
done
"$BIN" serve --brokers 127.0.0.1:18592 --config schemas/demo.yaml --data "$dir/default" --listen 127.0.0.1:18581 --log-level warn >"$dir/default.log" 2>&1 &
pids+=($!)
"$BIN" serve --brokers 127.0.0.1:18592 --config schemas/demo.yaml --data "$dir/nolog" --listen 127.0.0.1:18582 --log-level warn \
  --lookup-log-sample 0 --ui=false >"$dir/nolog.log" 2>&1 &
pids+=($!)
for port in 18581 18582; do
  for i in $(seq 1 240); do
    curl -sf -o /dev/null -XPOST 127.0.0.1:$port/v1/lookup -d '{"entity":"user","keys":["u0001"],"features":["txn_count_7d"]}' && break
    sleep 0.5
  done
done
# steal: CPU ticks the hypervisor gave other guests (all CPUs, /proc/stat). On a shared host a
# run with much steal is slower for reasons outside this machine: compare rounds with little.
steal() { awk '/^cpu / {print $9}' /proc/stat; }
# cpu PID...: CPU ticks (utime+stime) of the processes together.
cpu() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
# The dev history, the replicas' catch-up and their compactions take a minute or more on 2
# cores: wait until dev and both replicas together use under 0.3 cores over 5 s (at most 5 min).
hz=$(getconf CLK_TCK)
for i in $(seq 1 60); do
  a=$(cpu "${pids[@]}"); sleep 5; b=$(cpu "${pids[@]}")
  [ $(((b - a) * 10 / (5 * hz))) -lt 3 ] && break
done
echo "settled after $((i * 5)) s: $(((b - a) * 100 / (5 * hz)))% of a core over the last 5 s"

# run NAME PORT PID: one wrk run, prints "NAME req/s p50", then the CPU time per request of
# the server (PID) and of dev (the broker the lookup log goes to, and its own worker), from
# /proc: a steadier measure than req/s on a shared machine (10 ms ticks: ~1% over a 10 s run),
# and the share of the machine's CPU time the hypervisor stole during the run.
per_request() { awk -v t="$1" -v n="$2" -v hz="$hz" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}'; } # TICKS N → µs
run() {
  local out s0 d0 s1 d1 n st0 st1 t0 t1
  s0=$(cpu "$3"); d0=$(cpu "${pids[0]}"); st0=$(steal); t0=$(date +%s%N)
  out=$(USERS=$USERS wrk -t1 -c8 -d"$DURATION" --latency -s deploy/bench/lookup.lua "http://127.0.0.1:$2")
  s1=$(cpu "$3"); d1=$(cpu "${pids[0]}"); st1=$(steal); t1=$(date +%s%N)
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  printf '%-8s %10s req/s  p50 %s  non-2xx %s  CPU-µs/request: server %s, dev %s  steal %s%%\n' "$1" \
    "$(awk '/^Requests\/sec/ {print $2}' <<<"$out")" \
    "$(awk '$1 == "50%" {print $2}' <<<"$out")" \
    "$(awk '/Non-2xx/ {print $NF}' <<<"$out" | grep . || echo 0)" \
    "$(per_request $((s1 - s0)) "$n")" "$(per_request $((d1 - d0)) "$n")" \
    "$(awk -v t=$((st1 - st0)) -v c="$(nproc)" -v hz="$hz" -v d=$((t1 - t0)) 'BEGIN {printf "%.0f", 100 * t / (c * hz * d / 1e9)}')"
}
# One unmeasured pass over the keys per replica first, so that no round holds their first reads
# (the view and answer caches filling).
for port in 18581 18582; do
  USERS=$USERS wrk -t1 -c8 -d3s -s deploy/bench/lookup.lua "http://127.0.0.1:$port" >/dev/null
done
echo "$(nproc) cores, $(uptime | sed 's/.*load average/load average/'), $USERS users, wrk -t1 -c8 -d$DURATION"
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r"
  run bare 18590 "${pids[1]}"
  run default 18581 "${pids[2]}"
  run nolog 18582 "${pids[3]}"
done
echo "$(uptime | sed 's/.*load average/load average/')"
