#!/usr/bin/env bash
# System packages that the tests need beyond a base Debian 12 image with Node, g++ and cmake.
# Idempotent: installs a package only when it is missing, runs `apt-get update` only when something
# has to be installed, and says what it did. Without root or apt it prints a note and exits 0, so the
# tests that need a missing package skip with a reason instead of failing.
#
# To add a package, append one line to PACKAGES below:
#   "<debian package> <command it provides, or - to check with dpkg only> <why the tests need it>"
set -uo pipefail

PACKAGES=(
  "chromium /usr/bin/chromium headless browser for the report.html web-page test (packages/cli/test/report-*.test.ts)"
  "wordnet-base - WordNet 3.0 dictionary files in /usr/share/wordnet for METEOR synonym matching (packages/sdk/test/eval-*.test.ts)"
  "python3-torch - PyTorch reference forward of llama/qwen2/qwen3 for the GGUF export tests (scripts/fixtures/llama_reference.py, packages/sdk/test/export-*.test.ts)"
  "openmpi-bin /usr/bin/mpirun Open MPI's launcher for the data-parallel training tests (packages/sdk/test/dist-*.test.ts, packages/cli/test/dist-*.test.ts)"
  "libopenmpi-dev - mpi.h and libmpi for the addon's MPI plug-in lora_mpi.so (CMake finds it; rebuild the addon after installing)"
)

log() { echo "setup-system: $*"; }

present() { # <package> <command or ->
  local pkg=$1 cmd=$2
  if [[ $cmd != "-" ]] && command -v "$cmd" >/dev/null 2>&1; then return 0; fi
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for entry in "${PACKAGES[@]}"; do
  read -r pkg cmd why <<<"$entry"
  if present "$pkg" "$cmd"; then
    log "$pkg: already installed"
  else
    log "$pkg: missing ($why)"
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  log "nothing to install"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  log "NOTE: not root, so not installing: ${missing[*]}. Run 'sudo bash scripts/setup-system.sh'; tests that need them will skip."
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "NOTE: apt-get is not available (not Debian?), so not installing: ${missing[*]}. Tests that need them will skip."
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
log "apt-get update"
if ! apt-get update -qq; then
  log "NOTE: apt-get update failed (offline?); not installing: ${missing[*]}. Tests that need them will skip."
  exit 0
fi
log "apt-get install ${missing[*]}"
if apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
  log "installed: ${missing[*]}"
else
  log "NOTE: apt-get install failed for: ${missing[*]}. Tests that need them will skip."
fi
exit 0
