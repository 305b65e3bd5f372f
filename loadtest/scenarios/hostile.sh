#!/usr/bin/env bash
# Hostile load: honest chat on two edges, first alone (the baseline), then
# the same honest load beside clients that break the rules (rill-load
# hostile: send floods, connect/close loops, slow readers asking for huge
# replays, parked fragments, slowloris headers). Both edges' RSS is sampled
# through each run; the peak is set against the bound of "An edge's
# memory" (docs/ARCHITECTURE.md) computed from the settings the edges were
# given here; the honest clients' p99 and losses of both runs are compared.
#
#   loadtest/scenarios/hostile.sh
#
# The edges keep the default limits (rates, opens, queues, deadlines; lib.sh
# lifts the rate and open limits for plain load runs): the honest load
# stays within them by coming from SOURCE_IPS addresses at RAMP sessions/s,
# and each hostile kind comes from an address of its own (127.0.0.201-205).
# Bounded: two runs of about DURATION + 25 s each, plus the set-up.
#
# Environment (all optional):
#   PROFILES (default 100), USERS per profile (default 10), RATE honest
#   messages/s (default 100), DURATION seconds of honest sending (default
#   60), RAMP honest sessions/s (default 200), SOURCE_IPS honest source
#   addresses (default 10), MAX_CONNECTIONS per edge (the formula's N,
#   default 2000);
#   FLOODS (default 4), FLOOD_RATE sends/s per flood session, 0 = as fast
#   as the socket takes (default 0), CHURN loops (default 4), CHURN_RATE
#   attempts/s per loop (default 50), READERS (default 4), PARKED (default
#   8), SLOWLORIS (default 50).
# Reports: loadtest/results/hostile-<stamp>-baseline.json and
# -honest.json (rill-load run, + .svg), -attack.json (rill-load hostile),
# and hostile-<stamp>.json: both runs side by side, the edges' peak RSS
# against the bound, the verdicts. Exits non-zero when an honest client
# lost anything acknowledged (or got it twice).
# shellcheck source=loadtest/scenarios/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

profiles="${PROFILES:-100}"
users="${USERS:-10}"
rate="${RATE:-100}"
duration="${DURATION:-60}"
ramp="${RAMP:-200}"
source_ips="${SOURCE_IPS:-10}"
max_connections="${MAX_CONNECTIONS:-2000}"
name="hostile-$stamp"

# The edges' settings that enter the memory bound, all given here (the
# defaults but max_connections), so that the bound is computed from what
# the edges ran with.
settings_json="$work/edge-settings.json"
cat >"$settings_json" <<JSON
{"max_connections": $max_connections, "session_queue_bytes": 65536,
 "max_message_bytes": 4096, "max_pending_connections": 1000,
 "window_bytes": 67108864, "max_rate_limited_users": 100000,
 "max_rate_limited_addresses": 100000, "brokers": 1}
JSON
EDGE_ENV=(
  "RILL_LIMITS__MAX_CONNECTIONS=$max_connections"
  "RILL_LIMITS__SESSION_QUEUE_BYTES=65536"
  "RILL_LIMITS__MAX_MESSAGE_BYTES=4096"
  "RILL_LIMITS__MAX_PENDING_CONNECTIONS=1000"
  "RILL_RECOVERY__WINDOW_BYTES=67108864"
  "RILL_LIMITS__MAX_RATE_LIMITED_USERS=100000"
  "RILL_LIMITS__MAX_RATE_LIMITED_ADDRESSES=100000"
  # The defaults, which lib.sh lifts for plain load runs.
  "RILL_LIMITS__SENDS_PER_SESSION={per_second=20.0,burst=100}"
  "RILL_LIMITS__SENDS_PER_USER={per_second=20.0,burst=100}"
  "RILL_LIMITS__OPENS_PER_USER={per_second=5.0,burst=20}"
  "RILL_LIMITS__OPENS_PER_ADDRESS={per_second=50.0,burst=500}"
  "RILL_LIMITS__MAX_SESSIONS_PER_ADDRESS=1000"
)

# The sampler and rill-load hostile are not in lib.sh's list of started
# processes (its CPU accounting would count them as the platform's): they
# are stopped here on the way out, then lib.sh's cleanup runs.
extra_pids=()
trap 'rc=$?; for p in "${extra_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; (exit "$rc"); cleanup' EXIT

# sample_start TAG: samples both edges' RSS (and live sessions) until
# sample_stop; the edges' peak RSS (VmHWM) is reset first.
sample_start() {
  rm -f "$work/sample.stop"
  local args=() i
  for i in "${!EDGE_NAMES[@]}"; do
    args+=("${EDGE_NAMES[$i]}=${EDGE_PIDS[$i]}=${EDGE_URLS[$i]}")
  done
  python3 - "$work/memory-$1.json" "$work/sample.stop" "${args[@]}" <<'PY' &
import json, os, sys, time, urllib.request
out, stop, edges = sys.argv[1], sys.argv[2], [a.split("=", 2) for a in sys.argv[3:]]
def status(pid, field):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
for _, pid, _ in edges:
    try:  # "5": reset the peak resident size (VmHWM) to the current one
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
peak = {n: 0 for n, _, _ in edges}
sessions = {n: 0 for n, _, _ in edges}
series = {n: [] for n, _, _ in edges}
start = last_metrics = time.time()
while not os.path.exists(stop) and os.getppid() != 1:
    now = time.time()
    for n, pid, url in edges:
        rss = status(pid, "VmRSS") or 0
        peak[n] = max(peak[n], rss)
        if not series[n] or now - series[n][-1][0] - start >= 1:
            series[n].append((round(now - start, 1), rss))
    if now - last_metrics >= 2:
        last_metrics = now
        for n, _, url in edges:
            try:
                text = urllib.request.urlopen(f"{url}/metrics", timeout=2).read().decode()
                live = [float(l.split()[-1]) for l in text.splitlines()
                        if l.startswith("rill_edge_live_sessions")]
                sessions[n] = max(sessions[n], int(sum(live)))
            except Exception:
                pass
    time.sleep(0.25)
report = {n: {"peak_rss_kib_sampled": peak[n], "peak_rss_kib_hwm": status(pid, "VmHWM"),
              "peak_live_sessions": sessions[n], "rss_kib_per_second": series[n]}
          for n, pid, _ in edges}
json.dump(report, open(out, "w"))
PY
  sampler_pid=$!
  extra_pids+=("$sampler_pid")
}

sample_stop() {
  touch "$work/sample.stop"
  wait "$sampler_pid"
}

# honest NAME: the honest chat load on both edges.
honest() {
  load "$1" "${urls[@]}" "${pids[@]}" --api "$API_URL" --profiles "$profiles" --users "$users" \
    --rate "$rate" --duration "$duration" --ramp "$ramp" --settle 3 --drain 3 \
    --source-ips "$source_ips" --testdata-max-users 20000 \
    --interval-secs "$(awk -v d="$duration" 'BEGIN { i = d / 6; print (i < 1 ? 1 : i) }')" \
    --no-progress
}

build
start_broker_and_redis
start_rill 2
mapfile -t urls < <(url_args "${EDGE_URLS[@]}")
mapfile -t pids < <(pid_args "${EDGE_PIDS[@]}")

# 1. The baseline: honest clients alone.
say "baseline: $profiles profiles x $users users, $rate msg/s for $duration s, no hostile client"
sample_start baseline
honest "$name-baseline"
sample_stop
# Let the edges free the baseline's sessions.
sleep 5

# 2. The same honest load, hostile clients beside it from the start of the
# honest set-up to a little past its drain.
hostile_secs=$((duration + profiles * users / ramp + 20))
say "hostile: the same honest load, hostile clients for $hostile_secs s"
sample_start attack
(cd "$repo" && RILL_LOAD_API_KEY="$LOAD_API_KEY" RILL_LOAD_TOKEN_SECRET="$LOAD_TOKEN_SECRET" \
  "$bin/rill-load" hostile "${urls[@]}" --api "$API_URL" --token-kid "$LOAD_TOKEN_KID" \
  --duration "$hostile_secs" --floods "${FLOODS:-4}" --flood-rate "${FLOOD_RATE:-0}" \
  --churn "${CHURN:-4}" --churn-rate "${CHURN_RATE:-50}" --readers "${READERS:-4}" \
  --parked "${PARKED:-8}" --slowloris "${SLOWLORIS:-50}" \
  --label "$name-attack" --out "$results/$name-attack.json") 2>"$work/rill-load-hostile.log" &
hostile_pid=$!
extra_pids+=("$hostile_pid")
honest "$name-honest"
wait "$hostile_pid" || die "rill-load hostile failed: $(tail -n 20 "$work/rill-load-hostile.log")"
sample_stop
cat "$work/rill-load-hostile.log" >&2

# 3. Side by side; the bound; the verdict.
python3 - "$results/$name.json" "$results/$name-baseline.json" "$results/$name-honest.json" \
  "$results/$name-attack.json" "$work/memory-baseline.json" "$work/memory-attack.json" \
  "$settings_json" "$(git -C "$repo" rev-parse --short HEAD)" <<'PY'
import json, sys
out, base_p, honest_p, attack_p, mem_base_p, mem_attack_p, settings_p, commit = sys.argv[1:9]
load = lambda p: json.load(open(p))
base, honest, attack = load(base_p), load(honest_p), load(attack_p)
mem_base, mem_attack, s = load(mem_base_p), load(mem_attack_p), load(settings_p)

MIB = 1024 * 1024
def bound(n):
    """docs/ARCHITECTURE.md, "An edge's memory", with n sessions: the parts
    that scale with sessions at n, the rest as the settings give them."""
    e_max = 6 * s["max_message_bytes"] + 1024  # JSON-escaped body + envelope
    parts = {
        "idle_sessions": n * 4400,
        "session_queues": n * (s["session_queue_bytes"] + e_max),
        "writes_in_progress": n * (64 * 1024 + e_max),
        "http_connections": (n + s["max_pending_connections"]) * (2000 + 64 * 1024),
        "recovery_window": s["window_bytes"],
        "replay_in_flight": s["window_bytes"],  # at most the window's turnover
        "rate_limit_maps": (2 * s["max_rate_limited_users"] + s["max_rate_limited_addresses"]) * 64,
        "sessions_per_address": n * 32,
        "membership_cache": 2 * n * 80,
        "kafka_consumer": 16 * MIB + 8 * MIB * s["brokers"],
        "kafka_producer": 64 * MIB,
        "process": 20 * 1000 * 1000,
    }
    return sum(parts.values()), parts

def memory(mem):
    rows = {}
    for edge, m in mem.items():
        peak = max(m["peak_rss_kib_sampled"], m["peak_rss_kib_hwm"] or 0) * 1024
        at_n, _ = bound(s["max_connections"])
        at_live, _ = bound(m["peak_live_sessions"])
        rows[edge] = {"peak_rss_bytes": peak, "peak_live_sessions": m["peak_live_sessions"],
                      "bound_at_max_connections_bytes": at_n,
                      "bound_at_live_sessions_bytes": at_live,
                      "peak_over_bound_at_max_connections": round(peak / at_n, 4),
                      "peak_over_bound_at_live_sessions": round(peak / at_live, 4),
                      "within_bound": peak <= at_n,
                      "rss_kib_per_second": m["rss_kib_per_second"]}
    return rows

def honest_view(r):
    d, m, c = r["deliveries"], r["messages"], r["connect"]
    return {"report": r["label"], "p50_ms": r["latency"]["p50_ms"], "p99_ms": r["latency"]["p99_ms"],
            "p999_ms": r["latency"]["p999_ms"], "max_ms": r["latency"]["max_ms"],
            "connected": c["connected"], "connect_failed": c["failed"],
            "sent": m["sent"], "acked": m["acked"], "unacked": m["unacked"],
            "deliveries_expected": d["expected"], "deliveries_unique": d["unique"],
            "lost": d["lost"], "duplicated": d["duplicated"], "disconnected": d["disconnected"],
            "errors": r["errors"], "machine": r.get("machine"),
            "edges_cpu_secs_sending": (r.get("edges") or {}).get("cpu_secs_sending"),
            "cpu_secs_by_process": r.get("cpu_secs_by_process")}

b, h = honest_view(base), honest_view(honest)
ratio = round(h["p99_ms"] / b["p99_ms"], 3) if b["p99_ms"] else None
lost = b["lost"] + h["lost"] + b["duplicated"] + h["duplicated"]
_, parts = bound(s["max_connections"])
summary = {
    "label": out.split("/")[-1][:-5], "commit": commit, "edge_settings": s,
    "bound_parts_at_max_connections_bytes": parts,
    "honest": {"baseline": b, "with_hostile": h, "p99_ratio": ratio,
               "p99_within_2x": ratio is not None and ratio <= 2.0,
               "lost_or_duplicated": lost},
    "memory": {"baseline": memory(mem_base), "with_hostile": memory(mem_attack)},
    "hostile": {"report": attack["label"], "verdicts": attack["verdicts"],
                "all_held": attack["all_held"], "kinds": attack["kinds"],
                "edge_counters_delta": attack["edge_counters_delta"]},
}
json.dump(summary, open(out, "w"), indent=2)
say = lambda t: print("scenario: " + t, file=sys.stderr)
say(f"honest p99: {b['p99_ms']} ms alone, {h['p99_ms']} ms beside the hostile clients "
    f"({ratio}x; within 2x: {summary['honest']['p99_within_2x']})")
say(f"honest p50: {b['p50_ms']} / {h['p50_ms']} ms; lost {b['lost']} / {h['lost']}, "
    f"duplicated {b['duplicated']} / {h['duplicated']}, unacked {b['unacked']} / {h['unacked']}, "
    f"connect failed {b['connect_failed']} / {h['connect_failed']}")
for run, rows in summary["memory"].items():
    for edge, m in rows.items():
        say(f"{run} {edge}: peak RSS {m['peak_rss_bytes'] / MIB:.1f} MiB, "
            f"{m['peak_live_sessions']} live sessions at most; bound "
            f"{m['bound_at_max_connections_bytes'] / MIB:.0f} MiB at max_connections "
            f"({m['peak_over_bound_at_max_connections']:.1%}), "
            f"{m['bound_at_live_sessions_bytes'] / MIB:.0f} MiB at the live sessions "
            f"({m['peak_over_bound_at_live_sessions']:.1%})")
for v in attack["verdicts"]:
    say(f"{v['kind']}: {'held' if v['held'] else 'NOT HELD'} ({v['seen']})")
if lost:
    say(f"honest clients lost or duplicated {lost} acknowledged deliveries")
    sys.exit(1)
PY
say "done: $results/$name*.json"
