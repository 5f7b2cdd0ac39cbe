#!/usr/bin/env bash
# Builds and runs the CUDA emulator self-test in every variant, then (when nvcc exists) the
# compile-only check of the same kernels for sm_80/89/90 with the ptxas register/smem report.
#   cuda/emu/test/run.sh            everything
#   JOBS=1 cuda/emu/test/run.sh     fewer parallel compile jobs (default 2)
# Build outputs go to cuda/emu/build/ (git-ignored). Exit status is non-zero if anything fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="$(cd "$here/.." && pwd)/build"
jobs="${JOBS:-2}"
mkdir -p "$build"
status=0

configure_build() {  # name, cmake args...
  local name="$1"; shift
  cmake -S "$here" -B "$build/$name" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >"$build/$name.configure.log" 2>&1 \
    || { cat "$build/$name.configure.log"; return 1; }
  cmake --build "$build/$name" -j "$jobs" 2>&1 | grep -Ev '^\[|^-- |Consolidate|Built target' || true
  [ -x "$build/$name/emu_test" ] || { echo "build of $name failed"; return 1; }
}

run_variant() {  # label, binary, env...
  local label="$1" bin="$2"; shift 2
  echo "=== $label"
  if ! env "$@" "$bin"; then
    echo "=== $label: FAILED"
    status=1
  fi
}

configure_build release
configure_build asan -DLORA_EMU_SANITIZE=ON
configure_build ucontext -DLORA_EMU_UCONTEXT=ON

run_variant "forward" "$build/release/emu_test" LORA_EMU_ORDER=forward
run_variant "reversed" "$build/release/emu_test" LORA_EMU_ORDER=reversed
run_variant "shuffled (seed 1)" "$build/release/emu_test" LORA_EMU_ORDER=shuffled LORA_EMU_SEED=1
run_variant "shuffled (seed 2718), 1 worker" "$build/release/emu_test" LORA_EMU_ORDER=shuffled LORA_EMU_SEED=2718 LORA_EMU_THREADS=1
run_variant "ASan+UBSan, shuffled" "$build/asan/emu_test" LORA_EMU_ORDER=shuffled LORA_EMU_SEED=7 \
  ASAN_OPTIONS=detect_stack_use_after_return=1:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
run_variant "ucontext fallback, reversed" "$build/ucontext/emu_test" LORA_EMU_ORDER=reversed

nvcc_bin="$(command -v nvcc || true)"
[ -z "$nvcc_bin" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc_bin=/usr/local/cuda/bin/nvcc
if [ -n "$nvcc_bin" ]; then
  echo "=== nvcc compile-only check (sm_80, sm_89, sm_90) with $nvcc_bin"
  report="$build/ptxas-report.txt"
  if "$nvcc_bin" -c -std=c++17 -O3 -Xptxas -v \
      -gencode arch=compute_80,code=sm_80 -gencode arch=compute_89,code=sm_89 -gencode arch=compute_90,code=sm_90 \
      "$here/nvcc_check.cu" -o "$build/nvcc_check.o" >"$report" 2>&1; then
    # one line per kernel and arch: registers and shared memory
    demangle=cat
    command -v c++filt >/dev/null && demangle=c++filt
    awk '/Compiling entry function/ { fn=$7; arch=$9 } /Used [0-9]+ registers/ { sub(/^ptxas info *: /, ""); print "  " arch " " fn " : " $0 }' \
      "$report" | sed "s/'//g" | $demangle
    echo "PASS nvcc compile-only check ($(grep -c 'Compiling entry' "$report") kernel builds; report: $report)"
  else
    cat "$report"
    echo "FAIL nvcc compile-only check"
    status=1
  fi
else
  echo "SKIP nvcc compile-only check: nvcc not found"
fi

if [ "$status" -eq 0 ]; then echo "run.sh: all variants passed"; else echo "run.sh: FAILURES above"; fi
exit "$status"
