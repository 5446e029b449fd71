#!/usr/bin/env bash
# Throughput of mtrproto-blocking (probe-bench) against the raw mtr-packet limit (raw-bench),
# alternating the two in one run, on loopback only. Prints medians and ratios.
#   tests/bench/compare.sh [COUNT] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."

count="${1:-100000}"
rounds="${2:-5}"
cargo build -q --release -p mtrproto-tests --bin probe-bench --bin raw-bench
bin=target/release

# The value of KEY in the last key=value line of a run.
field() { tail -n1 | tr ' ' '\n' | sed -n "s/^$1=//p"; }
median() { sort -n | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }

row() { # label, probe-bench args, raw-bench args ("" to skip raw)
    local label="$1" ours_args="$2" raw_args="$3" ours=() raw=() driver=() helper=() rss=()
    for _ in $(seq "$rounds"); do
        out="$($bin/probe-bench $ours_args)"
        ours+=("$(field probes_per_s <<<"$out")")
        driver+=("$(field driver_cpu_s <<<"$out")")
        helper+=("$(field helper_cpu_s <<<"$out")")
        rss+=("$(field rss_kb <<<"$out")")
        if [ -n "$raw_args" ]; then
            raw+=("$($bin/raw-bench $raw_args | field probes_per_s)")
        fi
    done
    local o r d h m
    o="$(printf '%s\n' "${ours[@]}" | median)"
    d="$(printf '%s\n' "${driver[@]}" | median)"
    h="$(printf '%s\n' "${helper[@]}" | median)"
    m="$(printf '%s\n' "${rss[@]}" | median)"
    if [ -n "$raw_args" ]; then
        r="$(printf '%s\n' "${raw[@]}" | median)"
        printf '| %-28s | %8.0f | %8.0f | %5.3f | %5.3f | %6s |\n' "$label" "$o" "$r" "$(awk "BEGIN{print $o/$r}")" "$(awk "BEGIN{print $d/$h}")" "$m"
    else
        printf '| %-28s | %8.0f | %8s | %5s | %5.3f | %6s |\n' "$label" "$o" "-" "-" "$(awk "BEGIN{print $d/$h}")" "$m"
    fi
}

common="--count $count --timeout 5"
echo "count=$count rounds=$rounds, medians; probes/s; driver/helper = CPU of our driver thread over the helpers' CPU"
echo "| run                          |  ours/s  |  raw/s   | ratio | drv/hlp | rss_kb |"
echo "|------------------------------|----------|----------|-------|---------|--------|"
row "icmp 127.0.0.1 W=256"  "$common --window 256 --protocol icmp" "$common --window 256 --protocol icmp"
row "udp port 9 W=256"      "$common --window 256 --protocol udp --port 9" "$common --window 256 --protocol udp --port 9"
row "tcp closed port W=256" "$common --window 256 --protocol tcp --port 9" "$common --window 256 --protocol tcp --port 9"
row "icmp ::1 W=256"        "$common --target ::1 --window 256 --protocol icmp" "$common --target ::1 --window 256 --protocol icmp"
row "icmp W=512 K=1"        "$common --window 512 --protocol icmp" "$common --window 512 --protocol icmp"
row "icmp K=2 (256 each)"       "$common --window 256 --helpers 2 --protocol icmp" ""
row "tcp K=2 (256 each)"        "$common --window 256 --helpers 2 --protocol tcp --port 9" ""
row "icmp 20000 submitted at once" "--count 20000 --timeout 5 --window 256 --submit-all --protocol icmp" ""

# Ours against the PyPI mtrpacket package (asyncio), where it is installed.
if python3 -c "import mtrpacket" 2>/dev/null; then
    ours=() py=()
    for _ in $(seq "$rounds"); do
        ours+=("$($bin/probe-bench --count "$count" --timeout 5 --window 256 | field probes_per_s)")
        py+=("$(python3 tests/bench/python_mtrpacket.py "$count" 256 | field probes_per_s)")
    done
    o="$(printf '%s\n' "${ours[@]}" | median)"
    p="$(printf '%s\n' "${py[@]}" | median)"
    echo
    echo "icmp W=256: ours $o probes/s, PyPI mtrpacket $p probes/s, ours/mtrpacket $(awk "BEGIN{print $o/$p}")"
else
    echo
    echo "skipped the mtrpacket comparison: pip install mtrpacket"
fi

# W=1: per-probe overhead next to the raw helper's own.
ours="$($bin/probe-bench --count 5000 --timeout 5 --window 1 --protocol icmp)"
raw="$($bin/raw-bench --count 5000 --timeout 5 --window 1 --protocol icmp)"
echo
echo "W=1: ours $(field probes_per_s <<<"$ours") probes/s, overhead_us=$(field overhead_us <<<"$ours"); raw $(field probes_per_s <<<"$raw") probes/s"
