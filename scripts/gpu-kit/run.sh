#!/usr/bin/env bash
# The GPU acceptance kit's runner (packed by scripts/gpu-kit/pack.sh). Needs only bash, coreutils,
# xz or python3 - no Node, no network. Runs every step in order, each under its own time budget,
# stops at nothing (a failure is recorded and the next step runs), logs everything to
# <out>/kit.log and writes <out>/summary.json.
#
#   bash run.sh --out DIR [--quick] [--only env,ops-cuda,...]
#
# Steps: env, ops-cuda (the CUDA op matrix vs the scalar reference on the device), ops-matrix
# (the cpu/emu matrix; full mode only), sanitize-memcheck/-racecheck/-synccheck (compute-sanitizer
# on the op matrix's small shapes), check (lora check on the OPT fixtures, f32 + bf16), bench
# (lora bench --gpu, embedded default), train-step (OPT-350m shape, r = 8/128/256), race (PyTorch
# + PEFT on the same shapes). --quick caps the whole run at 470 s (fits 8 minutes on an H100 with
# the unpacking); the full run at 570 s (one 600 s device call).
# Without a usable GPU the CUDA steps run where the kit can (op matrix and check on the emulator,
# the race's PyTorch side on the CPU at a tiny shape) or record "no-gpu" with the reason.
set -uo pipefail
KIT=$(cd "$(dirname "$0")" && pwd)
OUTDIR=""
QUICK=0
ONLY=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) OUTDIR=$2; shift ;;
    --quick) QUICK=1 ;;
    --only) ONLY=$2; shift ;;
    -h|--help) sed -n 2,17p "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ -n $OUTDIR ]] || { echo "run.sh: --out DIR is required" >&2; exit 2; }
mkdir -p "$OUTDIR/steps" || exit 2
OUTDIR=$(cd "$OUTDIR" && pwd)
LOG="$OUTDIR/kit.log"
: > "$LOG"
log() { echo "[kit $(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }
START=$(date +%s)
TOTAL=$(( QUICK ? 470 : 570 ))

# --- unpack Node and the addon into a scratch folder (the kit folder stays as it came) -----------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lora-kit.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
unxz_to() { # <src.xz> <dest>
  if command -v xz >/dev/null 2>&1; then xz -dc "$1" > "$2"
  else python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],"wb"))' "$1" "$2"; fi
}
mkdir -p "$WORK/bin" "$WORK/cache" "$WORK/home"
if [[ -f $KIT/node.xz ]]; then unxz_to "$KIT/node.xz" "$WORK/bin/node"; else cp "$KIT/node" "$WORK/bin/node"; fi
unxz_to "$KIT/lora_native.node.xz" "$WORK/lora_native.node"
chmod +x "$WORK/bin/node"
# The addon needs libstdc++ with GLIBCXX_3.4.30: when the machine's is older, Node runs with the
# kit's copy (a wrapper sets LD_LIBRARY_PATH for node; gpu_race.mjs gives python the system's back).
load_addon() { "$WORK/bin/node" -e 'require(process.argv[1])' "$WORK/lora_native.node" 2>&1 | head -3; }
if load_addon | grep -q GLIBCXX && [[ -f $KIT/lib/libstdc++.so.6.xz ]]; then
  mkdir -p "$WORK/lib" && unxz_to "$KIT/lib/libstdc++.so.6.xz" "$WORK/lib/libstdc++.so.6"
  mv "$WORK/bin/node" "$WORK/node-real"
  printf '#!/usr/bin/env bash\nexport LORA_KIT_SYSTEM_LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}"\nLD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s" "$@"\n' "$WORK/lib" "$WORK/node-real" > "$WORK/bin/node"
  chmod +x "$WORK/bin/node"
  echo "[kit] the system's libstdc++ lacks GLIBCXX_3.4.30: node runs with the kit's copy" | tee -a "$LOG"
fi
ADDON_LOAD=$(load_addon)
[[ -z $ADDON_LOAD ]] || echo "[kit] the addon does not load here (glibc >= 2.34 needed; $(ldd --version 2>&1 | head -1)): $ADDON_LOAD" | tee -a "$LOG"
export PATH="$WORK/bin:$PATH" LORA_NATIVE_PATH="$WORK/lora_native.node" LORA_CACHE_DIR="$WORK/cache" LORA_EMU_CHILD=1
APP="$KIT/app"
LORA="$APP/node_modules/@lora/cli/bin/lora.js"
PY=${LORA_PEER_PYTHON:-python3}
log "kit: $(tr -s '\n ' ' ' < "$KIT/kit-info.json" 2>/dev/null | cut -c1-400)"
log "node $(node --version 2>&1), unpacked in $(( $(date +%s) - START )) s; out: $OUTDIR; mode: $([[ $QUICK == 1 ]] && echo quick || echo full), budget ${TOTAL} s"
GPU=$(cd "$APP" && node --input-type=module -e "import('@lora/core-native').then(c => { const b = c.native().backends().find(x => x.name === 'cuda'); console.log(b?.usable ? 'yes' : 'no: ' + (b?.reason || 'the CUDA backend is not in this build')); }).catch(e => console.log('no: ' + e.message.split('\n')[0]))" 2>&1 | tail -1)
log "GPU: $GPU"
HAVE_GPU=0; [[ $GPU == yes ]] && HAVE_GPU=1
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)

# step <name> <budget s> <command...>: runs it under timeout from the app folder, output to the log
# and to steps/<name>.log; steps/<name>.json gets status, exit code, seconds, budget.
step() {
  local name=$1 budget=$2; shift 2
  if [[ -n $ONLY && ",$ONLY," != *",$name,"* ]]; then return; fi
  local left=$(( TOTAL - ($(date +%s) - START) - 5 ))
  (( budget > left )) && budget=$left
  local slog="$OUTDIR/steps/$name.log" t0 rc status
  if (( budget < 5 )); then
    log "step $name: skipped, the run's ${TOTAL} s budget is spent"
    printf '{"name":"%s","status":"skipped","reason":"run budget spent","rc":null,"seconds":0,"budget_s":0}\n' "$name" > "$OUTDIR/steps/$name.json"
    return
  fi
  log "step $name: start (budget ${budget} s): $*"
  t0=$(date +%s)
  (cd "$APP" && timeout -k 5 "$budget" "$@") > "$slog" 2>&1
  rc=$?
  sed "s/^/[$name] /" "$slog" >> "$LOG"
  if (( rc == 0 )); then status=pass
  elif (( rc == 124 || rc == 137 )); then status=timeout
  elif (( HAVE_GPU == 0 )) && grep -qE 'CUDA unavailable|needs a CUDA GPU|no GPU' "$slog"; then status=no-gpu
  else status=fail; fi
  printf '{"name":"%s","status":"%s","rc":%d,"seconds":%d,"budget_s":%d,"command":"%s"}\n' "$name" "$status" "$rc" "$(( $(date +%s) - t0 ))" "$budget" "$(echo "$*" | sed 's/[\"\\]//g' | cut -c1-300)" > "$OUTDIR/steps/$name.json"
  log "step $name: $status (exit $rc, $(( $(date +%s) - t0 )) s)"
}
skip() { # <name> <reason>
  if [[ -n $ONLY && ",$ONLY," != *",$1,"* ]]; then return; fi
  log "step $1: skipped: $2"
  printf '{"name":"%s","status":"skipped","reason":"%s","rc":null,"seconds":0,"budget_s":0}\n' "$1" "$2" > "$OUTDIR/steps/$1.json"
}
q() { [[ $QUICK == 1 ]] && echo "$1" || echo "$2"; }

# The sanitizers run the device op table (small ragged shapes already); quick mode takes one case
# of each kernel family (racecheck is the slowest tool: ~10-100x a plain run).
SAN_FILTER='.'
(( QUICK )) && SAN_FILTER='matmul_xwt x=(bf16 w=(bf16|nf4)|f32 w=(f32|i8))|matmul_dyw w=bf16|matmul_dw bf16|dequantize int4|fused LoRA|embedding|layernorm|attention|rmsnorm|elementwise|cast|cross-entropy over vocab chunks w=nf4|adamw|head dims'
OPS_TARGET=emu; (( HAVE_GPU )) && OPS_TARGET=cuda

step env 30 node "$LORA" env
node "$LORA" env --json > "$OUTDIR/env.json" 2>>"$LOG" || true
step ops-cuda "$(q 75 150)" env LORA_OPS_TARGET=$OPS_TARGET node tests/run-tests.mjs --json "$OUTDIR/ops-cuda.json" tests/emu-ops.test.mjs
if (( QUICK )); then skip ops-matrix "quick mode (the cpu/emu op matrix is CI's; its cuda column needs device tensors: ops-cuda)"
else step ops-matrix 150 node tests/run-tests.mjs --json "$OUTDIR/ops-matrix.json" tests/ops-matrix.test.mjs; fi
for tool in memcheck racecheck synccheck; do
  if (( ! HAVE_GPU )); then skip "sanitize-$tool" "no GPU ($GPU)"
  elif [[ -z $SAN ]]; then skip "sanitize-$tool" "compute-sanitizer not found"
  else
    budget=$(q 45 90); [[ $tool == synccheck ]] && budget=$(q 30 60)
    step "sanitize-$tool" "$budget" env LORA_OPS_TARGET=cuda "$SAN" --tool "$tool" --target-processes all --error-exitcode 99 --print-limit 50 \
      node tests/run-tests.mjs --json "$OUTDIR/sanitize-$tool.json" --filter "$SAN_FILTER" tests/emu-ops.test.mjs
  fi
done
CHECK_DEV=emu; (( HAVE_GPU )) && CHECK_DEV=cuda
check_all() {
  local bad=0
  for f in opt-tiny-preln opt-tiny-postln; do
    for dt in f32 bf16; do
      local expect=expect.safetensors; [[ $dt == bf16 ]] && expect=expect-bf16.safetensors
      echo "== lora check $f --device $CHECK_DEV --dtype $dt"
      node "$LORA" check --model "fixtures/$f/model" --adapter "fixtures/$f/adapter" --expect "fixtures/$f/$expect" --device "$CHECK_DEV" --dtype "$dt" || bad=1
    done
  done
  return $bad
}
export -f check_all; export LORA CHECK_DEV
step check "$(q 45 90)" bash -c check_all
step bench "$(q 90 180)" node "$LORA" bench --gpu --out "$OUTDIR/bench" $(q "--steps 10" "")
RACE_SHAPE=(--warmup 1 --steps "$(q 2 5)")
if (( HAVE_GPU )); then
  step train-step "$(q 75 120)" node bench/peer/gpu_race.mjs --sides ours --device cuda "${RACE_SHAPE[@]}" --out "$OUTDIR/train-step.json"
  step race "$(q 90 120)" node bench/peer/gpu_race.mjs --sides theirs --device cuda --python "$PY" "${RACE_SHAPE[@]}" --against "$OUTDIR/train-step.json" --out "$OUTDIR/race.json"
else
  step train-step 30 node bench/peer/gpu_race.mjs --sides ours --device cuda "${RACE_SHAPE[@]}" --out "$OUTDIR/train-step.json"
  # No GPU: both sides at a tiny shape on the CPU, to prove the scripts run (not a measurement).
  step race 90 node bench/peer/gpu_race.mjs --device cpu --python "$PY" --ranks 8 --layers 1 --batch 1 --seq 32 --warmup 0 --steps 1 --out "$OUTDIR/race.json"
fi
node "$KIT/summarize.mjs" "$OUTDIR" "$KIT" "$GPU" "$QUICK" "$(( $(date +%s) - START ))" 2>&1 | tee -a "$LOG"
log "done in $(( $(date +%s) - START )) s: $OUTDIR/summary.json"
