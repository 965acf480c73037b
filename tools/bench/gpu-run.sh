#!/usr/bin/env bash
# The GPU run of issue 17, in one script of at most 15 minutes, for a machine with an accelerator:
# the synthetic SD 1.5 (tools/bench/synthetic-sd15.py, 860 M UNet parameters, built here on first use) at 512²,
# 50 steps with classifier-free guidance, batch 1 and 4, webgpu against cpu: ms per UNet call and s per image
# (tools/bench/gpu-bench.ts). Results go to $OUT (default out/gpu-run): gpu-bench.json, the table, the machine.
#
#   bash tools/bench/gpu-run.sh                       # the full run
#   SIZE=128 BASE=32 TEXT_WIDTH=64 TEXT_LAYERS=2 VAE_BASE=32 bash tools/bench/gpu-run.sh   # toy size (CPU test)
#
# What it needs there: node 20+, this checkout's node_modules (onnxruntime-node ships the WebGPU provider for
# linux-x64), python3 with torch and onnx to write the model once, and a Vulkan loader (libvulkan.so.1) with the
# GPU's ICD for Dawn, onnxruntime's WebGPU backend; VULKAN_LIB_DIR may name a folder holding a libvulkan.so.1.
# Without them the provider falls back to cpu and the table says so.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-out/gpu-run}"
mkdir -p "$OUT"
SIZE="${SIZE:-512}" STEPS="${STEPS:-50}" BATCHES="${BATCHES:-1,4}" PROVIDERS="${PROVIDERS:-webgpu,cpu}"
BASE="${BASE:-320}" TEXT_WIDTH="${TEXT_WIDTH:-768}" TEXT_LAYERS="${TEXT_LAYERS:-12}" VAE_BASE="${VAE_BASE:-128}"
MODEL="${MODEL:-${TMPDIR:-/tmp}/imagine-synthetic-sd15-b${BASE}-t${TEXT_WIDTH}x${TEXT_LAYERS}-v${VAE_BASE}}"
PYTHON="${PYTHON:-python3}"
started=$(date +%s)
log() { echo "[gpu-run $(( $(date +%s) - started ))s] $*" | tee -a "$OUT/gpu-run.log" >&2; }

{
  echo "date: $(date -u +%FT%TZ)"
  echo "host: $(hostname)"; uname -a
  nproc; free -g | head -2
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "nvidia-smi: none"
  node --version
  node -e "console.log('onnxruntime-node', require('onnxruntime-node/package.json').version)" 2>&1
} > "$OUT/machine.txt" 2>&1 || true

[ -d node_modules/onnxruntime-node ] || { log "node_modules/onnxruntime-node is missing: carry this checkout's node_modules"; exit 2; }
if [ -n "${VULKAN_LIB_DIR:-}" ]; then export LD_LIBRARY_PATH="$VULKAN_LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
if ! { ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; } && ! ls "${VULKAN_LIB_DIR:-/nonexistent}"/libvulkan.so.1 >/dev/null 2>&1; then
  log "no libvulkan.so.1 found: the webgpu provider will likely fall back to cpu"
fi

if [ ! -f "$MODEL/unet/model.onnx" ]; then
  log "writing the synthetic SD 1.5 into $MODEL"
  timeout 360 "$PYTHON" tools/bench/synthetic-sd15.py --out "$MODEL" --base "$BASE" --text-width "$TEXT_WIDTH" \
    --text-layers "$TEXT_LAYERS" --vae-base "$VAE_BASE" 2> >(grep -v -i warn >&2) | tee "$OUT/synthetic.json"
fi

log "timing: providers $PROVIDERS, ${SIZE}², $STEPS steps, batches $BATCHES"
timeout 480 npx --no-install tsx tools/bench/gpu-bench.ts --model "$MODEL" --providers "$PROVIDERS" --size "$SIZE" \
  --steps "$STEPS" --batches "$BATCHES" --calls "${CALLS:-10}" --cpu-steps "${CPU_STEPS:-1}" --cpu-calls "${CPU_CALLS:-2}" \
  --json "$OUT/gpu-bench.json" 2> >(tee -a "$OUT/gpu-run.log" >&2) | tee "$OUT/gpu-bench.md"
log "done"
