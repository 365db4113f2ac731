#!/usr/bin/env bash
# Throughput of /livez and cached /health next to a bare axum handler returning `ok`, in one run,
# on loopback. Needs `wrk` (Debian: apt-get install -y wrk).
#
#   crates/health/benches/wrk.sh            # 3 rounds of -t2 -c64 -d5s per route
#   ROUNDS=5 DURATION=10s crates/health/benches/wrk.sh
#
# Routes are measured in turn within each round, so drift in machine load hits all of them alike;
# the medians and their ratios to the bare handler are printed at the end.
set -euo pipefail

rounds=${ROUNDS:-3}
duration=${DURATION:-5s}
threads=${THREADS:-2}
connections=${CONNECTIONS:-64}

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
cargo build --release --quiet -p groundwork-health --example bench_server
target=${CARGO_TARGET_DIR:-$root/target}

# The server prints its port, then serves until its stdin closes.
coproc SERVER { exec "$target/release/examples/bench_server"; }
server_pid=$SERVER_PID
read -r port <&"${SERVER[0]}"
server_stdin=${SERVER[1]}
stop() { exec {server_stdin}>&- 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }
trap stop EXIT

declare -A results
routes=(/ok /livez /health)
for round in $(seq "$rounds"); do
    for route in "${routes[@]}"; do
        report=$(wrk -t"$threads" -c"$connections" -d"$duration" "http://127.0.0.1:$port$route")
        # A 503 is cheap too: a route that did not answer 200 measured the wrong thing.
        if grep -q 'Non-2xx' <<<"$report"; then
            echo "$route answered other than 2xx:" >&2; echo "$report" >&2; exit 1
        fi
        rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$report")
        echo "round $round $route $rps req/s"
        results[$route]="${results[$route]:-} $rps"
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
base=$(echo "${results[/ok]}" | median)
echo
echo "wrk -t$threads -c$connections -d$duration, $rounds rounds, medians:"
for route in "${routes[@]}"; do
    value=$(echo "${results[$route]}" | median)
    awk -v r="$route" -v v="$value" -v b="$base" 'BEGIN { printf "%-8s %10.0f req/s  %.2fx of /ok\n", r, v, v / b }'
done
