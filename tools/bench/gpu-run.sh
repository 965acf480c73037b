#!/usr/bin/env bash
# The GPU run of issue 17, in one script of at most 15 minutes, for a machine with an accelerator:
# the synthetic SD 1.5 (tools/bench/synthetic-sd15.py, 860 M UNet parameters, folded weights from the pack) at 512²,
# 50 steps with classifier-free guidance, batch 1 and 4, webgpu against cpu: ms per UNet call and s per image
# (tools/bench/gpu-bench.ts). Results go to $OUT (default out/gpu-run): gpu-bench-<provider>.json, the tables
# (gpu-bench.md), gpu-run.log, machine.txt.
#
#   bash tools/bench/gpu-pack.sh                      # here, once: out/gpu-pack/imagine-gpu-pack.tar.xz (the model inside)
#   bash tools/bench/gpu-run.sh                       # there (carry out/gpu-pack): the full run
#   SIZE=64 STEPS=10 CPU_STEPS=10 ICD=swiftshader bash tools/bench/gpu-run.sh
#                                                     # toy check of the whole path on a machine without a GPU (with a
#                                                     # pack built with SYNTHETIC_ARGS for a toy model, or MODEL=...)
#
# What it needs there: the pack (gpu-pack.sh: node, the bench bundled, onnxruntime-node's linux-x64 binding with
# its WebGPU provider, sharp, the Vulkan loader, SwiftShader), unpacked into $PACK_DIR; without it, node 20+ and
# this checkout's node_modules. A Vulkan ICD for the GPU: the driver's (/usr/share/vulkan/icd.d, /etc/vulkan/icd.d),
# or, when only NVIDIA's libGLX_nvidia.so.0 is there, a nvidia_icd.json written here that points at it. ICD=swiftshader
# runs on the pack's software device instead (checks the path, measures nothing of a GPU). The model: MODEL, else
# the pack's model/ (the synthetic SD 1.5 with folded weights, which onnxruntime expands at load: no python
# needed there), else the synthetic SD 1.5 written by $PYTHON with torch and onnx (tools/bench/synthetic-sd15.py).
# Without a Vulkan device the webgpu rows fall back to cpu and the table says so.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-out/gpu-run}"
mkdir -p "$OUT"
SIZE="${SIZE:-512}" STEPS="${STEPS:-50}" BATCHES="${BATCHES:-1,4}" PROVIDERS="${PROVIDERS:-webgpu,cpu}"
BASE="${BASE:-320}" TEXT_WIDTH="${TEXT_WIDTH:-768}" TEXT_LAYERS="${TEXT_LAYERS:-12}" VAE_BASE="${VAE_BASE:-128}"
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

# The pack: node, the bench and its native modules, the Vulkan loader.
GPU_PACK="${GPU_PACK:-out/gpu-pack/imagine-gpu-pack.tar.xz}"
PACK_DIR="${PACK_DIR:-${TMPDIR:-/tmp}/imagine-gpu-pack}"
if [ -f "$GPU_PACK" ]; then
  if [ ! -f "$PACK_DIR/MANIFEST" ] || [ "$GPU_PACK" -nt "$PACK_DIR/MANIFEST" ]; then
    log "unpacking $GPU_PACK into $PACK_DIR"
    unpacked="$(mktemp -d)"
    xz -dc "$GPU_PACK" | tar -C "$unpacked" -xf -
    rm -rf "$PACK_DIR" && mkdir -p "$(dirname "$PACK_DIR")" && mv "$unpacked/imagine-gpu-pack" "$PACK_DIR" && rmdir "$unpacked"
  fi
  NODE="$PACK_DIR/bin/node"
  BENCH=("$NODE" "$PACK_DIR/app/gpu-bench.mjs")
  export LD_LIBRARY_PATH="$PACK_DIR/vulkan${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  head -7 "$PACK_DIR/MANIFEST" | sed 's/^/pack /' >> "$OUT/machine.txt"
  if [ -z "${MODEL:-}" ] && [ -f "$PACK_DIR/model/unet/model.onnx" ]; then MODEL="$PACK_DIR/model"; fi
else
  [ -d node_modules/onnxruntime-node ] || { log "neither $GPU_PACK nor node_modules/onnxruntime-node: run tools/bench/gpu-pack.sh and carry out/gpu-pack"; exit 2; }
  log "no pack ($GPU_PACK): using this checkout's node_modules"
  NODE=node
  BENCH=(npx --no-install tsx tools/bench/gpu-bench.ts)
fi
if [ -n "${VULKAN_LIB_DIR:-}" ]; then export LD_LIBRARY_PATH="$VULKAN_LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi

# The Vulkan driver Dawn will find.
if [ "${ICD:-}" = swiftshader ]; then
  for icd in "$PACK_DIR/vulkan/swiftshader/vk_swiftshader_icd.json" /usr/lib/chromium/vk_swiftshader_icd.json; do
    [ -f "$icd" ] && { export VK_ICD_FILENAMES="$icd"; break; }
  done
  [ -n "${VK_ICD_FILENAMES:-}" ] || { log "ICD=swiftshader but no SwiftShader ICD in the pack or /usr/lib/chromium"; exit 2; }
  log "Vulkan: SwiftShader (software): webgpu times here only prove the path"
elif [ -z "${VK_ICD_FILENAMES:-}" ]; then
  icds=$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json 2>/dev/null || true)
  glx=$(ldconfig -p 2>/dev/null | awk '/libGLX_nvidia\.so\.0 .*x86-64/ && !found { print $NF; found = 1 }' || true)
  if [ -z "$icds" ] && [ -n "$glx" ]; then
    # NVIDIA's driver carries its Vulkan ICD in libGLX_nvidia; a container may have the library without the JSON
    # that names it (the driver's own nvidia_icd.json says the same).
    mkdir -p "$OUT/icd"
    printf '{ "file_format_version": "1.0.0", "ICD": { "library_path": "%s", "api_version": "1.3" } }\n' "$glx" > "$OUT/icd/nvidia_icd.json"
    export VK_ICD_FILENAMES="$OUT/icd/nvidia_icd.json"
    log "Vulkan: no ICD file; wrote $VK_ICD_FILENAMES for $glx"
  elif [ -z "$icds" ]; then
    log "Vulkan: no ICD file and no libGLX_nvidia.so.0: the webgpu rows will likely fall back to cpu"
  else
    log "Vulkan ICDs: $(echo $icds)"
  fi
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
echo "VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-} LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}" >> "$OUT/machine.txt"

MODEL="${MODEL:-${TMPDIR:-/tmp}/imagine-synthetic-sd15-b${BASE}-t${TEXT_WIDTH}x${TEXT_LAYERS}-v${VAE_BASE}}"
if [ ! -f "$MODEL/unet/model.onnx" ]; then
  "$PYTHON" -c 'import torch, onnx' 2>/dev/null || { log "no $MODEL, and $PYTHON lacks torch or onnx to write the synthetic SD 1.5: give MODEL=<a model folder>"; exit 3; }
  log "writing the synthetic SD 1.5 into $MODEL"
  timeout 360 "$PYTHON" tools/bench/synthetic-sd15.py --out "$MODEL" --base "$BASE" --text-width "$TEXT_WIDTH" \
    --text-layers "$TEXT_LAYERS" --vae-base "$VAE_BASE" 2> >(grep -v -i warn >&2) | tee "$OUT/synthetic.json"
fi
log "model: $MODEL ($(tr -s '\n ' ' ' < "$MODEL/synthetic.json" 2>/dev/null || echo 'not a synthetic-sd15.py folder'))"

# One bench process per provider, each under its own limit, so a slow cpu row cannot take the webgpu rows' results
# with it (the cpu's 512² calls are many seconds each): webgpu first, up to 7 minutes, cpu up to 4.
: > "$OUT/gpu-bench.md"
status=0
for provider in ${PROVIDERS//,/ }; do
  limit=240; [ "$provider" = cpu ] || limit=420
  log "timing: $provider, ${SIZE}², $STEPS steps, batches $BATCHES (at most ${limit} s)"
  timeout "$limit" "${BENCH[@]}" --model "$MODEL" --providers "$provider" --size "$SIZE" \
    --steps "$STEPS" --batches "$BATCHES" --calls "${CALLS:-10}" --cpu-steps "${CPU_STEPS:-1}" --cpu-calls "${CPU_CALLS:-2}" \
    --json "$OUT/gpu-bench-$provider.json" 2> >(tee -a "$OUT/gpu-run.log" >&2) | tee -a "$OUT/gpu-bench.md" || {
    status=$?
    log "$provider: the bench ended with status $status (124: over its ${limit} s)"
  }
done
log "done"
exit "$status"
