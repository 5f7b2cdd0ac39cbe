#!/usr/bin/env bash
# Packs the GPU acceptance kit: everything run.sh needs on a bare GPU machine (no Node, no
# network), in one ignored folder that the device tool carries (<= 60 MiB).
#
#   scripts/gpu-kit/pack.sh              # CUDA addon (sm_80/89/90) built into packages/core-native/build-gpukit
#   scripts/gpu-kit/pack.sh --cpu-only   # no CUDA build: the repo's built addon, fast compression (CI self-test)
#   options: --out DIR (default scripts/gpu-kit/kit), --addon FILE (take this built addon instead of building)
#
# The kit: node.xz (this machine's Node), lora_native.node.xz, app/ (the packages' built JS with
# their run-time dependencies, the op-matrix tests made runnable without vitest, bench/peer's race
# scripts, the OPT parity fixtures), run.sh and kit-info.json (what was packed, sizes, build time).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT="$HERE/kit"
CPU_ONLY=0
ADDON=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --cpu-only) CPU_ONLY=1 ;;
    --out) OUT=$2; shift ;;
    --addon) ADDON=$2; shift ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) echo "pack.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
LIMIT_MIB=60
log() { echo "pack: $*"; }
NODE_BIN=$(readlink -f "$(command -v node)")
CACHE="$HERE/.cache"
mkdir -p "$CACHE"
[[ -d "$ROOT/packages/sdk/dist" && -d "$ROOT/packages/cli/dist" && -d "$ROOT/packages/core-native/dist" ]] ||
  { echo "pack.sh: build the packages first (npm run build)" >&2; exit 1; }

# --- the addon ---------------------------------------------------------------------------------
build_s=null
decision="given: $ADDON"
# A build folder's own record of what CMake decided (…/build-x/Release/lora_native.node -> …/build-x/cuda-decision.txt).
[[ -n $ADDON && -f $(dirname "$ADDON")/../cuda-decision.txt ]] && decision="given: $ADDON ($(cat "$(dirname "$ADDON")/../cuda-decision.txt"))"
if [[ -z $ADDON && $CPU_ONLY == 1 ]]; then
  ADDON="$ROOT/packages/core-native/build/Release/lora_native.node"
  decision="the repo's build ($(cat "$ROOT/packages/core-native/build/cuda-decision.txt" 2>/dev/null || echo 'no cuda-decision.txt'))"
elif [[ -z $ADDON ]]; then
  # A separate build folder (ignored: packages/core-native/build-*/), under the shared build lock,
  # so the repo's own build/ is never touched. nvcc for the three archs dominates the time.
  log "building the CUDA addon (LORA_CUDA=on, sm_80/89/90) in packages/core-native/build-gpukit (waits for /tmp/lora-native.lock)"
  t0=$(date +%s)
  flock /tmp/lora-native.lock bash -c "t=\$(date +%s); cd '$ROOT/packages/core-native' && LORA_CUDA=on LORA_CUDA_ARCHS='80;89;90' LORA_BUILD_DIR=build-gpukit \
    CMAKE_BUILD_PARALLEL_LEVEL=\${CMAKE_BUILD_PARALLEL_LEVEL:-2} node scripts/build-native.js && echo \$(( \$(date +%s) - t )) > '$CACHE/build-seconds'"
  build_s=$(cat "$CACHE/build-seconds")
  log "CUDA build: ${build_s} s of building, $(( $(date +%s) - t0 )) s with the wait for the lock"
  ADDON="$ROOT/packages/core-native/build-gpukit/Release/lora_native.node"
  decision=$(cat "$ROOT/packages/core-native/build-gpukit/cuda-decision.txt")
  [[ $decision == "CUDA backend ON"* ]] || { echo "pack.sh: the kit build has no CUDA backend: $decision" >&2; exit 1; }
fi
[[ -f $ADDON ]] || { echo "pack.sh: no addon at $ADDON (npm run build -w @lora/core-native)" >&2; exit 1; }
log "addon: $ADDON ($decision)"

# --- compression: xz -6 for the lease (run.sh unpacks with xz, or Python's lzma); --cpu-only
# keeps Node uncompressed and uses xz -0 for the addon (xz -6 of Node took 235 s here, -1 47 s).
LEVEL=6
[[ $CPU_ONLY == 1 ]] && LEVEL=0
xz_to() { # <src> <dest>: xz, or Python's lzma where xz-utils is not installed
  if command -v xz >/dev/null 2>&1; then xz -T2 -"$LEVEL" -c "$1" > "$2"
  else python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(open(sys.argv[1],"rb"), lzma.open(sys.argv[2],"wb",preset=int(sys.argv[3])))' "$1" "$2" "$LEVEL"; fi
}
compress() { # <file> <dest.xz>: cached by content, since xz -6 of Node takes minutes on 2 cores
  local key; key=$(sha256sum "$1" | cut -c1-24)
  local cached="$CACHE/$(basename "$2").$key.$LEVEL"
  if [[ ! -f $cached ]]; then
    log "xz -$LEVEL $(basename "$1") ($(( $(stat -c %s "$1") / 1048576 )) MiB)"
    xz_to "$1" "$cached.tmp" && mv "$cached.tmp" "$cached"
  fi
  cp "$cached" "$2"
}

if [[ -e $OUT && ! -f $OUT/kit-info.json && -n $(ls -A "$OUT" 2>/dev/null) ]]; then
  echo "pack.sh: $OUT exists and is not a kit; not replacing it" >&2; exit 1
fi
rm -rf "$OUT"
mkdir -p "$OUT/app/tests" "$OUT/app/bench/peer" "$OUT/app/fixtures"
if [[ $CPU_ONLY == 1 ]]; then cp "$NODE_BIN" "$OUT/node"; else compress "$NODE_BIN" "$OUT/node.xz"; fi
compress "$ADDON" "$OUT/lora_native.node.xz"
# The addon needs GLIBCXX_3.4.30 (g++ 12) and glibc 2.34: run.sh falls back to this libstdc++ when
# the machine's is older (glibc itself cannot travel; run.sh then says so).
mkdir -p "$OUT/lib" && xz_to /lib/x86_64-linux-gnu/libstdc++.so.6 "$OUT/lib/libstdc++.so.6.xz"
node "$HERE/stage-js.mjs" "$ROOT" "$OUT/app"
node "$HERE/transpile-tests.mjs" "$ROOT" "$OUT/app/tests"
cp "$HERE/vitest-shim.mjs" "$HERE/run-tests.mjs" "$OUT/app/tests/"
cp "$ROOT/bench/peer/gpu_race.mjs" "$ROOT/bench/peer/peft_step.py" "$ROOT/bench/peer/opt_torch.py" "$OUT/app/bench/peer/"
for f in opt-tiny-preln opt-tiny-postln; do cp -r "$ROOT/packages/sdk/test/fixtures/$f" "$OUT/app/fixtures/"; done
cp "$HERE/run.sh" "$HERE/summarize.mjs" "$OUT/"
chmod +x "$OUT/run.sh"

bytes=$(du -sb "$OUT" | cut -f1)
node -e '
const [out, bytes, node, decision, build, cpuOnly, commit, dirty] = process.argv.slice(1);
const info = { packed_at: new Date().toISOString(), commit, uncommitted_changes: dirty === "1", node: process.version, node_xz_level: cpuOnly === "1" ? 0 : 6,
  addon: decision, cuda_build_seconds: build === "null" ? null : Number(build), cpu_only: cpuOnly === "1", bytes: Number(bytes) };
require("fs").writeFileSync(out + "/kit-info.json", JSON.stringify(info, null, 2) + "\n");' \
  "$OUT" "$bytes" "$NODE_BIN" "$decision" "$build_s" "$CPU_ONLY" "$(git -C "$ROOT" rev-parse --short HEAD)" "$([[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no) ]] && echo 1 || echo 0)"
mib=$(( (bytes + 1048575) / 1048576 ))
log "kit at $OUT: $mib MiB (node $(( $(stat -c %s "$OUT"/node* | head -1) / 1048576 )) MiB, addon.xz $(( $(stat -c %s "$OUT/lora_native.node.xz") / 1048576 )) MiB, app $(du -sm "$OUT/app" | cut -f1) MiB)"
if [[ $CPU_ONLY == 0 && $mib -gt $LIMIT_MIB ]]; then echo "pack.sh: the kit is $mib MiB, over the $LIMIT_MIB MiB a device call carries" >&2; exit 1; fi
