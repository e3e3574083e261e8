#!/usr/bin/env bash
# Soak: `mtls-guard serve` as its own process, under a steady rate of mixed /mutate
# and /validate reviews (the captured ones of tests/fixtures/admission, sent by wrk
# with scripts/soak.lua), while the snapshot changes every second and the serving
# certificate is rotated every 2 minutes the way kubelet updates a mounted Secret (a
# new timestamped folder, then `..data` swapped by rename). The snapshot changes as:
# - files mode (default): `serve --policies DIR`, the policy files rewritten;
# - cluster mode (--cluster): `serve --kubeconfig` against scripts/soak-apiserver.py,
#   a stand-in API server (plain HTTP on localhost) that sends watch events every
#   second and expires one kind's watches every --expire-every seconds (410, re-list).
#   Every 5 s the soak also checks that the server follows: review 18 of the fixtures
#   (a DestinationRule with tls DISABLE) must be denied while the stand-in's
#   PeerAuthentication says STRICT and allowed while it says PERMISSIVE, and the
#   server's DestinationRule count must be the stand-in's.
#
# Prints, per minute: requests, p50/p99 latency, errors, resident memory (VmRSS)
# (cluster mode: also watch events sent and applied, re-lists, snapshot checks),
# then a summary. Exits 1 on any error (a non-200 answer, a body that is not an
# AdmissionReview answer, a socket error), a rotation the server did not pick up,
# the server gone (cluster mode: a minute with no event applied or no snapshot
# check passed, or the stand-in gone). Not part of CI; needs wrk, curl and openssl
# (Debian packages), and python3 for --cluster.
#
#   cargo build --release && scripts/soak.sh --minutes 30
#   cargo build --release && scripts/soak.sh --cluster --minutes 30
#
# Options: --minutes N (30), --rate R (total requests per second, 400),
# --connections C (8), --rotate-every S (120), --binary PATH
# (target/release/mtls-guard), --port P (18443; admin P+1, stand-in API server
# P+2), --cluster, --expire-every S (60), --out DIR (a new folder under /tmp:
# results, the server's log, rss.tsv, minutes.tsv).
set -euo pipefail

minutes=30 rate=400 connections=8 rotate_every=120 port=18443 out="" cluster=0 expire_every=60
repo=$(cd "$(dirname "$0")/.." && pwd)
binary="$repo/target/release/mtls-guard"
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --rotate-every) rotate_every=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --cluster) cluster=1; shift ;;
    --expire-every) expire_every=$2; shift 2 ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "soak: unknown argument $1" >&2; exit 2 ;;
  esac
done
tools="wrk curl openssl"
[ "$cluster" -eq 0 ] || tools="$tools python3"
for tool in $tools; do
  command -v "$tool" >/dev/null || { echo "soak: $tool is needed (apt-get install $tool)" >&2; exit 2; }
done
[ -x "$binary" ] || { echo "soak: no $binary (cargo build --release first)" >&2; exit 2; }
admin=$((port + 1)) apiport=$((port + 2))
out=${out:-$(mktemp -d /tmp/mtls-guard-soak.XXXXXX)}
mkdir -p "$out"
work=$(mktemp -d)
pids=()
# A copy, so that a build during the run does not swap the binary under it.
cp "$binary" "$work/mtls-guard"
binary="$work/mtls-guard"
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- files mode: the Bookinfo tutorial, plus two files rewritten every second
policies="$work/policies"
mkdir -p "$policies"
cp "$repo"/examples/bookinfo/*.yaml "$policies/"
churn() {
  # Tick t: the PeerAuthentication flips between STRICT and PERMISSIVE, and a
  # namespace of 0..49 DestinationRules grows and shrinks (bounded: memory must not).
  local t=$1 mode=STRICT i
  [ $((t % 2)) -eq 0 ] || mode=PERMISSIVE
  printf 'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: bookinfo\nspec:\n  mtls:\n    mode: %s\n' \
    "$mode" >"$policies/.churn-pa.tmp"
  mv "$policies/.churn-pa.tmp" "$policies/churn-peerauthentication.yaml"
  {
    printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: soak\n'
    for ((i = 0; i < t % 50; i++)); do
      printf -- '---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: r%d\n  namespace: soak\nspec:\n  host: s%d.soak.svc.cluster.local\n  trafficPolicy:\n    tls:\n      mode: ISTIO_MUTUAL\n' "$i" "$i"
    done
  } >"$policies/.churn-dr.tmp"
  mv "$policies/.churn-dr.tmp" "$policies/churn-destinationrules.yaml"
}
[ "$cluster" -eq 1 ] || churn 0

# --- the serving certificate, in a folder laid out like a mounted Secret
secret="$work/secret"
mkdir -p "$secret"
generation=0
rotate() {
  generation=$((generation + 1))
  local gen="$work/gen" name
  "$binary" certs --out "$gen" --san 127.0.0.1 --san localhost --days 2 --force >>"$out/certs.log" 2>&1
  name="..$(date -u +%Y_%m_%d_%H_%M_%S).$generation"
  mkdir "$secret/$name"
  cp "$gen/tls.crt" "$gen/tls.key" "$secret/$name/"
  local old
  old=$(readlink "$secret/..data" 2>/dev/null || true)
  ln -s "$name" "$secret/..data_tmp"
  mv -T "$secret/..data_tmp" "$secret/..data"
  [ -z "$old" ] || rm -rf "${secret:?}/$old"
  [ -e "$secret/tls.crt" ] || ln -s ..data/tls.crt "$secret/tls.crt"
  [ -e "$secret/tls.key" ] || ln -s ..data/tls.key "$secret/tls.key"
  openssl x509 -noout -fingerprint -sha256 -in "$gen/tls.crt" | cut -d= -f2
}
served_fingerprint() {
  openssl s_client -connect "127.0.0.1:$port" -servername localhost </dev/null 2>/dev/null |
    openssl x509 -noout -fingerprint -sha256 2>/dev/null | cut -d= -f2
}
expected=$(rotate)

# --- cluster mode: the stand-in API server, and a kubeconfig naming it
standin() { curl -sf "http://127.0.0.1:$apiport/soak/state"; }
if [ "$cluster" -eq 1 ]; then
  python3 "$repo/scripts/soak-apiserver.py" --port "$apiport" --expire-every "$expire_every" \
    >"$out/apiserver.log" 2>&1 &
  apiserver=$!
  pids+=("$apiserver")
  for _ in $(seq 1 50); do standin >/dev/null && break; sleep 0.1; done
  standin >/dev/null || { echo "soak: the stand-in API server did not start" >&2; cat "$out/apiserver.log" >&2; exit 1; }
  printf 'apiVersion: v1\nkind: Config\nclusters:\n- name: soak\n  cluster:\n    server: http://127.0.0.1:%d\nusers:\n- name: soak\n  user: {}\ncontexts:\n- name: soak\n  context:\n    cluster: soak\n    user: soak\ncurrent-context: soak\n' \
    "$apiport" >"$work/kubeconfig"
  source_args=(--kubeconfig "$work/kubeconfig")
else
  # The files are polled every 250 ms, so that nearly every rewrite is loaded (the
  # recorded 30-minute run used this). Before the settle-time fix a reload waited
  # for one whole quiet poll interval, so with the default 2 s files rewritten
  # every second were never reloaded; now they are, less often.
  source_args=(--policies "$policies" --policies-poll-interval 250ms)
fi

# --- the server
"$binary" serve --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
  --tls-cert "$secret/tls.crt" --tls-key "$secret/tls.key" \
  "${source_args[@]}" >"$out/serve.log" 2>&1 &
server=$!
pids+=("$server")
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null || { echo "soak: the server did not become ready" >&2; cat "$out/serve.log" >&2; exit 1; }

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$server/status" 2>/dev/null || echo 0; }
started=$(date +%s)
echo "# elapsed_s rss_kB" >"$out/rss.tsv"
( while kill -0 "$server" 2>/dev/null; do
    echo "$(($(date +%s) - started)) $(rss)" >>"$out/rss.tsv"; sleep 5
  done ) &
pids+=("$!")
if [ "$cluster" -eq 0 ]; then
  ( t=1; while kill -0 "$server" 2>/dev/null; do sleep 1; churn "$t"; t=$((t + 1)); done ) &
  pids+=("$!")
fi

# --- cluster mode: does the server's snapshot follow the stand-in's events?
scrape() { curl -sf "http://127.0.0.1:$admin/metrics" || true; }
# Watch events applied by the server (type apply+delete, or relist), over every kind.
watch_events() { scrape | awk -v t="$1" '/^mtls_guard_watch_events_total\{/ && $1 ~ t {s += $2} END {print s + 0}'; }
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([0-9A-Z]*\).*/\1/p" <<<"$2"; }
review18=$(ls "$repo"/tests/fixtures/admission/18-update-destinationrule-productpage-v1-validating.json)
checks=0 checks_ok=0
check_snapshot() {
  local before after verdict drs expect
  before=$(standin) || return 0
  # Just after a tick the server may not have applied it yet: ask mid-second.
  if [ "$(field tick_age_ms "$before")" -lt 300 ]; then sleep 0.3; before=$(standin) || return 0; fi
  verdict=$(curl -sk --max-time 5 --data-binary @"$review18" -H 'Content-Type: application/json' \
    "https://127.0.0.1:$port/validate" | grep -o '"allowed":[a-z]*' | cut -d: -f2)
  drs=$(scrape | awk '$1 == "mtls_guard_snapshot_objects{kind=\"DestinationRule\"}" {print $2}')
  after=$(standin) || return 0
  # A tick in between: inconclusive.
  [ "$(field tick "$before")" = "$(field tick "$after")" ] || return 0
  expect=false
  [ "$(field peerauthentication_mode "$before")" = PERMISSIVE ] && expect=true
  checks=$((checks + 1))
  if [ "$verdict" = "$expect" ] && [ "$drs" = "$(field destinationrules "$before")" ]; then
    checks_ok=$((checks_ok + 1))
  else
    echo "$(date -u +%T) tick $(field tick "$before"): mode $(field peerauthentication_mode "$before"), allowed $verdict (expected $expect); DestinationRules $drs (stand-in $(field destinationrules "$before"))" >>"$out/checks.log"
  fi
}

reviews=("$repo"/tests/fixtures/admission/*.json)
pause=$((connections * 1000 / rate))
if [ "$cluster" -eq 1 ]; then
  changes="watch events every 1 s from a stand-in API server (watches of one kind expired every ${expire_every} s)"
else
  changes="policies rewritten every 1 s"
fi
echo "soak: $minutes min, $rate reviews/s over $connections connections (pause ${pause} ms), ${#reviews[@]} captured reviews; $changes; certificate rotated every ${rotate_every} s; results in $out"
header=(minute requests req/s p50_ms p99_ms max_ms errors rss_MiB)
[ "$cluster" -eq 0 ] || header+=(ev_sent ev_applied relists checks_ok)
printf '%6s %9s %8s %9s %9s %9s %7s %10s' "${header[@]:0:8}" | tee "$out/minutes.tsv"
[ "$cluster" -eq 0 ] || printf ' %8s %10s %7s %9s' "${header[@]:8}" | tee -a "$out/minutes.tsv"
echo | tee -a "$out/minutes.tsv"
sent_before=$(field events "$(standin 2>/dev/null)") applied_before=$(watch_events 'type="(apply|delete)"')
relists_before=$(watch_events 'type="relist"') stuck=0

rotations=0 seen=0 errors=0 total=0 last_rotation=$started
for ((m = 1; m <= minutes; m++)); do
  wrk -t2 -c"$connections" -d60s --timeout 10s -s "$repo/scripts/soak.lua" \
    "https://127.0.0.1:$port" -- "$pause" "${reviews[@]}" >"$out/wrk-$m.txt" 2>&1 &
  load=$!
  checks_before=$checks checks_ok_before=$checks_ok tick=0
  # Rotations during the minute, each checked on a new TLS handshake a few seconds later.
  while kill -0 "$load" 2>/dev/null; do
    tick=$((tick + 1))
    [ "$cluster" -eq 0 ] || [ $((tick % 5)) -ne 0 ] || check_snapshot
    now=$(date +%s)
    if [ $((now - last_rotation)) -ge "$rotate_every" ]; then
      expected=$(rotate); rotations=$((rotations + 1)); last_rotation=$now
      for _ in $(seq 1 20); do
        sleep 0.5
        if [ "$(served_fingerprint)" = "$expected" ]; then seen=$((seen + 1)); break; fi
      done
    fi
    sleep 1
  done
  wait "$load" || true
  line=$(grep '^SOAK ' "$out/wrk-$m.txt" || true)
  if [ -z "$line" ]; then echo "soak: wrk failed in minute $m:" >&2; cat "$out/wrk-$m.txt" >&2; errors=$((errors + 1)); continue; fi
  val() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$line"; }
  e=$(($(val bad_status) + $(val bad_body) + $(val connect) + $(val read) + $(val write) + $(val timeout)))
  errors=$((errors + e)); total=$((total + $(val requests)))
  printf '%6d %9d %8.0f %9s %9s %9s %7d %10.1f' "$m" "$(val requests)" \
    "$(awk -v r="$(val requests)" -v s="$(val seconds)" 'BEGIN {print r / s}')" \
    "$(val p50_ms)" "$(val p99_ms)" "$(val max_ms)" "$e" "$(awk -v k="$(rss)" 'BEGIN {print k / 1024}')" | tee -a "$out/minutes.tsv"
  if [ "$cluster" -eq 1 ]; then
    sent=$(field events "$(standin)") applied=$(watch_events 'type="(apply|delete)"') relists=$(watch_events 'type="relist"')
    printf ' %8d %10d %7d %9s' $((sent - sent_before)) $((applied - applied_before)) \
      $((relists - relists_before)) "$((checks_ok - checks_ok_before))/$((checks - checks_before))" | tee -a "$out/minutes.tsv"
    # A stuck snapshot: nothing applied, or no check passed, in a whole minute.
    if [ "$applied" -eq "$applied_before" ] || [ "$checks_ok" -eq "$checks_ok_before" ]; then stuck=$((stuck + 1)); fi
    sent_before=$sent applied_before=$applied relists_before=$relists
    kill -0 "$apiserver" 2>/dev/null || { echo; echo "soak: the stand-in API server exited" >&2; errors=$((errors + 1)); }
  fi
  echo | tee -a "$out/minutes.tsv"
  kill -0 "$server" 2>/dev/null || { echo "soak: the server exited" >&2; errors=$((errors + 1)); break; }
done

metrics=$(curl -sf "http://127.0.0.1:$admin/metrics" || true)
metric() { awk -v s="$1" '$1 == s {print $2}' <<<"$metrics"; }
peak=$(awk '/^VmHWM:/ {print $2}' "/proc/$server/status" 2>/dev/null || echo 0)
warm=$(awk '$1 >= 120 {print $2; exit}' "$out/rss.tsv")
max_after=$(awk '$1 >= 120 && $2 > m {m = $2} END {print m + 0}' "$out/rss.tsv")
last=$(tail -1 "$out/rss.tsv" | cut -d' ' -f2)
# (wrk sends the IP address as SNI, which rustls warns about: not counted.)
log_problems=$(grep -cE ' (ERROR|WARN) mtls_guard' "$out/serve.log" || true)
echo
echo "requests: $total, errors: $errors"
echo "certificate rotations: $rotations, seen served on a new handshake: $seen"
if [ "$cluster" -eq 1 ]; then
  state=$(standin || true)
  echo "stand-in API server: $(field tick "$state") ticks, $(field events "$state") watch events written, $(field watches "$state") watch requests, $(field gone "$state") answered 410 (expiries: $(field expired "$state")), $(field lists "$state") lists, $(field bookmarks "$state") bookmarks"
  echo "server: watch events applied (apply+delete) $(awk '/^mtls_guard_watch_events_total\{/ && /type="(apply|delete)"/ {s += $2} END {print s + 0}' <<<"$metrics"), re-lists $(awk '/^mtls_guard_watch_events_total\{/ && /type="relist"/ {s += $2} END {print s + 0}' <<<"$metrics")"
  echo "snapshot checks (verdict of review 18 and DestinationRule count as the stand-in's): $checks_ok of $checks passed; minutes without an applied event or a passed check: $stuck (mismatches: $out/checks.log)"
else
  echo "policy reloads: ok $(metric 'mtls_guard_snapshot_reloads_total{result="ok"}'), error $(metric 'mtls_guard_snapshot_reloads_total{result="error"}')"
fi
echo "certificate reloads: ok $(metric 'mtls_guard_certificate_reloads_total{result="ok"}'), error $(metric 'mtls_guard_certificate_reloads_total{result="error"}')"
echo "VmRSS: ${warm:-?} kB after 2 min, max ${max_after} kB after that, ${last} kB at the end; peak (VmHWM) ${peak} kB"
echo "mtls-guard warning or error lines in the server's log: $log_problems ($out/serve.log)"
if [ "$errors" -ne 0 ] || [ "$seen" -ne "$rotations" ] || [ "$stuck" -ne 0 ] || ! kill -0 "$server" 2>/dev/null; then
  echo "soak: FAILED" >&2
  exit 1
fi
echo "soak: ok"
