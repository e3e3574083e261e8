#!/usr/bin/env bash
# Load from another process, as users see it: `mtls-guard serve --policies
# examples/bookinfo` (release build) driven by wrk (Debian) with the 71 captured
# reviews (scripts/soak.lua, unpaced), at 1 and at 64 connections; then at 64
# connections while a file is appended to beside the certificate and, alternately,
# in another folder (issue 9, defect 1: the reload must not react to it);
# then a 4 MiB body over HTTP/2 and over HTTP/1.1 (defect 2: both must get 413).
# Needs wrk, curl and openssl. Prints one line per run.
#
#   cargo build --release && scripts/wrk-load.sh [--seconds 10] [--rounds 2]
set -euo pipefail

seconds=10 rounds=2 port=19443
repo=$(cd "$(dirname "$0")/.." && pwd)
binary="$repo/target/release/mtls-guard"
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "wrk-load: unknown argument $1" >&2; exit 2 ;;
  esac
done
for tool in wrk curl openssl; do
  command -v "$tool" >/dev/null || { echo "wrk-load: $tool is needed (apt-get install $tool)" >&2; exit 2; }
done
[ -x "$binary" ] || { echo "wrk-load: no $binary (cargo build --release first)" >&2; exit 2; }
admin=$((port + 1))
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$binary" certs --out "$work/certs" --san 127.0.0.1 --san localhost --days 2 >/dev/null 2>&1
"$binary" serve --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
  --tls-cert "$work/certs/tls.crt" --tls-key "$work/certs/tls.key" \
  --policies "$repo/examples/bookinfo" >"$work/serve.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null || { echo "wrk-load: the server did not become ready" >&2; cat "$work/serve.log" >&2; exit 1; }

reviews=("$repo"/tests/fixtures/admission/*.json)
echo "wrk-load: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); ${#reviews[@]} captured reviews; ${seconds}s per run"
printf '%-46s %11s %9s %9s %7s\n' run reviews/s p50_ms p99_ms errors
run() {
  local name=$1 threads=$2 connections=$3 out
  out=$(wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency --timeout 10s \
    -s "$repo/scripts/soak.lua" "https://127.0.0.1:$port" -- 0 "${reviews[@]}" 2>&1)
  # scripts/soak.lua's closing line: counts, errors of each sort, percentiles.
  awk -v name="$name" '
    /^SOAK / {
      for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      errors = v["bad_status"] + v["bad_body"] + v["connect"] + v["read"] + v["write"] + v["timeout"]
      printf "%-46s %11.0f %9.3f %9.3f %7d\n", name, v["requests"] / v["seconds"], v["p50_ms"], v["p99_ms"], errors
      found = 1
    }
    END { if (!found) { print name ": no result from wrk"; exit 1 } }
  ' <<<"$out"
}
busy() {
  # About 50,000 short lines a second appended to the file $1.
  while :; do
    for _ in $(seq 1 500); do echo "log line $RANDOM"; done >>"$1"
    sleep 0.01
  done
}
mkdir -p "$work/elsewhere"
run "1 connection" 1 1
run "64 connections" 2 64
# The same writer in both runs (it takes CPU too); only its folder differs.
for ((r = 1; r <= rounds; r++)); do
  for where in elsewhere certs; do
    busy "$work/$where/server.log" &
    writer=$!
    if [ "$where" = certs ]; then label="writer beside the certificate"; else label="writer in another folder"; fi
    run "64 connections, $label" 2 64
    kill "$writer"
    wait "$writer" 2>/dev/null || true
  done
done
echo "lines appended beside the certificate: $(wc -l <"$work/certs/server.log" 2>/dev/null || echo 0)"

head -c $((4 * 1024 * 1024)) /dev/zero | tr '\0' 'a' >"$work/big.json"
for proto in --http2 --http1.1; do
  code=$(curl -sk "$proto" -o "$work/answer" -w '%{http_code} %{http_version}' \
    -H 'Content-Type: application/json' --data-binary @"$work/big.json" \
    "https://127.0.0.1:$port/validate" || true)
  echo "4 MiB body $proto: HTTP $code: $(head -c 120 "$work/answer")"
done
