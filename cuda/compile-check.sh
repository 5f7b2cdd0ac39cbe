#!/usr/bin/env bash
# Compile-only check of the CUDA kernels for sm_80 / sm_89 / sm_90 (A100 / L4 / H100) with
# `-Xptxas -v`. Compiles the cuda backend's translation unit (packages/core-native/src/cuda_backend/
# cuda_ops.cu), which instantiates every kernel and launcher of cuda/kernels. No GPU needed.
# Keeps the full ptxas report in cuda/build/ptxas-kernels.txt and prints one line per kernel and
# arch (registers, spills, shared memory). Exit 0 when every arch compiles; 77 when nvcc is absent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
out="$here/build"
mkdir -p "$out"
NVCC="${NVCC:-$(command -v nvcc || true)}"
[ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
[ -z "$NVCC" ] && [ -x /usr/local/bin/nvcc ] && NVCC=/usr/local/bin/nvcc
if [ -z "$NVCC" ]; then echo "compile-check: nvcc not found (skipped)"; exit 77; fi
src="$repo/packages/core-native/src/cuda_backend/cuda_ops.cu"
report="$out/ptxas-kernels.txt"
: > "$report"
start=$(date +%s)
pids=()
for arch in 80 89 90; do
  # At most 2 compilations at a time (shared 2-vCPU machines).
  ( "$NVCC" -std=c++17 -O3 -c "$src" -o "$out/cuda_ops.sm_$arch.o" \
      -gencode "arch=compute_$arch,code=sm_$arch" -Xptxas -v \
      -I "$repo/packages/core-native/src" -I "$here" > "$out/ptxas.sm_$arch.txt" 2>&1 ) &
  pids+=($!)
  if [ ${#pids[@]} -ge 2 ]; then wait "${pids[0]}" || { cat "$out/ptxas.sm_$arch.txt"; exit 1; }; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || { cat "$out"/ptxas.sm_*.txt; exit 1; }; done
end=$(date +%s)
for arch in 80 89 90; do cat "$out/ptxas.sm_$arch.txt" >> "$report"; done
echo "compile-check: $("$NVCC" --version | tail -1) sm_80/89/90 in $((end - start)) s; report: $report"
# One line per kernel and arch: "sm_XX <demangled kernel> : N registers, S bytes smem, spills".
python3 - "$report" <<'PY' || true
import re, subprocess, sys
lines = open(sys.argv[1]).read().splitlines()
cur = None; arch = None; spill = ""
rows = []
for l in lines:
    m = re.search(r"Compiling entry function '([^']+)' for '(sm_\d+)'", l)
    if m: cur, arch = m.group(1), m.group(2); spill = ""; continue
    m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", l)
    if m and cur: spill = f"stack {m.group(1)}B spills {m.group(2)}/{m.group(3)}B"; continue
    m = re.search(r"Used (\d+) registers.*?(\d+) bytes smem", l)
    if m and cur:
        rows.append((arch, cur, int(m.group(1)), int(m.group(2)), spill)); cur = None
names = {}
try:
    out = subprocess.run(["c++filt"], input="\n".join(r[1] for r in rows), capture_output=True, text=True).stdout.splitlines()
    names = dict(zip((r[1] for r in rows), out))
except Exception:
    pass
seen = set()
for arch, k, regs, smem, spill in rows:
    if (arch, k) in seen: continue  # ptxas may report an entry twice (e.g. relocatable + final)
    seen.add((arch, k))
    n = names.get(k, k)
    n = re.sub(r"lora::kgpu::", "", n)
    n = re.sub(r"\(.*", "", n)
    print(f"  {arch} {n:<44} {regs:>3} regs  {smem:>6} B static smem  {spill}")
PY
