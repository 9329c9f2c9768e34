#!/usr/bin/env bash
# bench/storage_vs_dd.sh [BUILD_DIR]: runs dd oflag=direct and the storage benchmarks on the
# same disk in the same run and prints the 100 KiB append rate as a share of dd's.
set -euo pipefail
build=${1:-build}
shift || true
dir=${RP_BENCH_DIR:-$build/benchtmp}
mkdir -p "$dir"
# dd runs before and after the benchmarks; the share is of their mean (this disk's rate moves
# by 20 % from one run to the next).
dd_rate() {
  local line
  line=$(dd if=/dev/zero of="$dir/dd.bin" bs=1M count=2000 oflag=direct 2>&1 | tail -1)
  rm -f "$dir/dd.bin"
  echo "dd: $line" >&2
  python3 -c "import sys,re; l=sys.argv[1]; b=int(l.split()[0]); t=float(re.search(r', ([0-9.]+) s,', l).group(1)); print(b/t)" "$line"
}
dd_before=$(dd_rate)
RP_BENCH_DIR="$dir" "$build/bench/bench_storage" --benchmark_format=json --benchmark_out="$dir/storage.json" \
  --benchmark_out_format=json --benchmark_format=console "$@" 2>&1 | grep -v '^\*\*\*'
dd_after=$(dd_rate)
dd_bps=$(python3 -c "import sys; print((float(sys.argv[1]) + float(sys.argv[2])) / 2)" "$dd_before" "$dd_after")
python3 - "$dir/storage.json" "$dd_bps" <<'PY'
import json, sys
data = json.load(open(sys.argv[1])); dd = float(sys.argv[2])
for b in data["benchmarks"]:
    if b["name"].startswith("BM_Append/102400"):
        print(f'{b["name"]}: {b["bytes_per_second"]/1e6:.0f} MB/s = {100*b["bytes_per_second"]/dd:.0f}% of dd direct (mean {dd/1e6:.0f} MB/s)')
    if b["name"].startswith("BM_AppendRing/102400"):
        mb = b["MB_per_s_drained"]
        print(f'{b["name"]}: {mb:.0f} MB/s (drained) = {100*mb*1e6/dd:.0f}% of dd direct (mean {dd/1e6:.0f} MB/s)')
PY
