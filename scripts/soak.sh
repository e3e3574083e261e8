#!/usr/bin/env bash
# Soak: `mtls-guard serve --policies DIR` as its own process, under a steady rate of
# mixed /mutate and /validate reviews (the captured ones of tests/fixtures/admission,
# sent by wrk with scripts/soak.lua), while the policy files are rewritten every
# second and the serving certificate is rotated every 2 minutes the way kubelet
# updates a mounted Secret (a new timestamped folder, then `..data` swapped by rename).
#
# Prints, per minute: requests, p50/p99 latency, errors, resident memory (VmRSS),
# then a summary. Exits 1 on any error (a non-200 answer, a body that is not an
# AdmissionReview answer, a socket error), a rotation the server did not pick up, or
# the server gone. Not part of CI; needs wrk, curl and openssl (Debian packages).
#
#   cargo build --release && scripts/soak.sh --minutes 30
#
# Options: --minutes N (30), --rate R (total requests per second, 400),
# --connections C (8), --rotate-every S (120), --binary PATH
# (target/release/mtls-guard), --port P (18443; admin P+1), --out DIR (a new
# folder under /tmp: results, the server's log, rss.tsv, minutes.tsv).
set -euo pipefail

minutes=30 rate=400 connections=8 rotate_every=120 port=18443 out=""
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
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "soak: unknown argument $1" >&2; exit 2 ;;
  esac
done
for tool in wrk curl openssl; do
  command -v "$tool" >/dev/null || { echo "soak: $tool is needed (apt-get install $tool)" >&2; exit 2; }
done
[ -x "$binary" ] || { echo "soak: no $binary (cargo build --release first)" >&2; exit 2; }
admin=$((port + 1))
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

# --- the mesh objects: the Bookinfo tutorial, plus two files rewritten every second
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
churn 0

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

# --- the server. The files are polled every 250 ms, so that nearly every rewrite
# is loaded (the recorded 30-minute run used this). Before the settle-time fix a
# reload waited for one whole quiet poll interval, so with the default 2 s files
# rewritten every second were never reloaded; now they are, less often.
"$binary" serve --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
  --tls-cert "$secret/tls.crt" --tls-key "$secret/tls.key" \
  --policies "$policies" --policies-poll-interval 250ms >"$out/serve.log" 2>&1 &
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
( t=1; while kill -0 "$server" 2>/dev/null; do sleep 1; churn "$t"; t=$((t + 1)); done ) &
pids+=("$!")

reviews=("$repo"/tests/fixtures/admission/*.json)
pause=$((connections * 1000 / rate))
echo "soak: $minutes min, $rate reviews/s over $connections connections (pause ${pause} ms), ${#reviews[@]} captured reviews; policies rewritten every 1 s; certificate rotated every ${rotate_every} s; results in $out"
printf '%6s %9s %8s %9s %9s %9s %7s %10s\n' minute requests req/s p50_ms p99_ms max_ms errors rss_MiB | tee "$out/minutes.tsv"

rotations=0 seen=0 errors=0 total=0 last_rotation=$started
for ((m = 1; m <= minutes; m++)); do
  wrk -t2 -c"$connections" -d60s --timeout 10s -s "$repo/scripts/soak.lua" \
    "https://127.0.0.1:$port" -- "$pause" "${reviews[@]}" >"$out/wrk-$m.txt" 2>&1 &
  load=$!
  # Rotations during the minute, each checked on a new TLS handshake a few seconds later.
  while kill -0 "$load" 2>/dev/null; do
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
  printf '%6d %9d %8.0f %9s %9s %9s %7d %10.1f\n' "$m" "$(val requests)" \
    "$(awk -v r="$(val requests)" -v s="$(val seconds)" 'BEGIN {print r / s}')" \
    "$(val p50_ms)" "$(val p99_ms)" "$(val max_ms)" "$e" "$(awk -v k="$(rss)" 'BEGIN {print k / 1024}')" | tee -a "$out/minutes.tsv"
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
echo "policy reloads: ok $(metric 'mtls_guard_snapshot_reloads_total{result="ok"}'), error $(metric 'mtls_guard_snapshot_reloads_total{result="error"}'); certificate reloads: ok $(metric 'mtls_guard_certificate_reloads_total{result="ok"}'), error $(metric 'mtls_guard_certificate_reloads_total{result="error"}')"
echo "VmRSS: ${warm:-?} kB after 2 min, max ${max_after} kB after that, ${last} kB at the end; peak (VmHWM) ${peak} kB"
echo "mtls-guard warning or error lines in the server's log: $log_problems ($out/serve.log)"
if [ "$errors" -ne 0 ] || [ "$seen" -ne "$rotations" ] || ! kill -0 "$server" 2>/dev/null; then
  echo "soak: FAILED" >&2
  exit 1
fi
echo "soak: ok"
