#!/usr/bin/env bash
# Packs what tools/bench/gpu-run.sh needs on a machine with an accelerator that has no network and may lack node,
# this checkout's node_modules and a Vulkan loader: one xz-compressed tar (well under the 64 MiB that may travel
# beside the working tree), built here and unpacked there by gpu-run.sh.
#
#   bash tools/bench/gpu-pack.sh            # → out/gpu-pack/imagine-gpu-pack.tar.xz (carry out/gpu-pack)
#   SYNTHETIC_ARGS="--base 64 --text-width 128 --text-layers 2 --vae-base 32" bash tools/bench/gpu-pack.sh  # toy model
#   SYNTHETIC_DIR=DIR bash tools/bench/gpu-pack.sh   # pack a folder synthetic-sd15.py already wrote (folded weights)
#   SYNTHETIC=none bash tools/bench/gpu-pack.sh      # no model inside (gpu-run.sh then needs MODEL or python there)
#
# Inside, under imagine-gpu-pack/:
#   bin/node                      this machine's node (linux-x64)
#   app/gpu-bench.mjs             tools/bench/gpu-bench.ts and the src/ it imports, bundled by esbuild into one file
#   app/node_modules/             what the bundle leaves outside: onnxruntime-node (linux-x64 binding and
#                                 libonnxruntime, with its WebGPU provider) + onnxruntime-common, sharp + its
#                                 linux-x64 libvips and small JS dependencies
#   vulkan/libvulkan.so.1         the Khronos Vulkan loader Dawn dlopens (Debian's libvulkan1, else Chromium's)
#   vulkan/swiftshader/           Chromium's SwiftShader ICD (software Vulkan): lets the pack's webgpu path be
#                                 checked on a machine with no GPU; gpu-run.sh uses it only when asked (ICD=swiftshader)
#   model/                        the synthetic SD 1.5 with folded weights (tools/bench/synthetic-sd15.py, written
#                                 here by $PYTHON, default /usr/bin/python3, with torch and onnx: about 3 min, 10 GB of
#                                 memory at its peak): 5.4 MB of files that onnxruntime expands to 860 M UNet
#                                 parameters at load, so the machine there needs no python
#   MANIFEST                      what went in, with versions and sizes
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT_DIR="${OUT_DIR:-out/gpu-pack}"
NAME=imagine-gpu-pack
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/$NAME"
mkdir -p "$root/bin" "$root/app/node_modules/@img" "$root/vulkan/swiftshader" "$OUT_DIR"

[ "$(uname -sm)" = "Linux x86_64" ] || { echo "gpu-pack: builds a linux-x64 pack; this is $(uname -sm)" >&2; exit 2; }

# node: the binary alone (it needs only glibc).
cp "$(readlink -f "$(command -v node)")" "$root/bin/node"

# The bench, bundled: everything pure-JS inlined; the two native packages stay outside and travel as files.
npx --no-install esbuild tools/bench/gpu-bench.ts --bundle --platform=node --format=esm --target=node20 \
  --external:onnxruntime-node --external:sharp --outfile="$root/app/gpu-bench.mjs" --log-level=warning \
  --banner:js="import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);"

copy_package() { # node_modules/<name> → app/node_modules/<name>, without what a linux-x64 run never reads
  local name="$1"
  mkdir -p "$root/app/node_modules/$(dirname "$name")"
  cp -R "node_modules/$name" "$root/app/node_modules/$name"
}
copy_package onnxruntime-common
copy_package onnxruntime-node
# Other platforms' binaries and the install script's helpers are not needed on linux-x64.
find "$root/app/node_modules/onnxruntime-node/bin/napi-v6" -mindepth 1 -maxdepth 1 ! -name linux -exec rm -rf {} +
find "$root/app/node_modules/onnxruntime-node/bin/napi-v6/linux" -mindepth 1 -maxdepth 1 ! -name x64 -exec rm -rf {} +
for name in sharp @img/colour @img/sharp-linux-x64 @img/sharp-libvips-linux-x64 detect-libc semver; do copy_package "$name"; done

# Vulkan: the loader, and SwiftShader for a check without a GPU.
loader="$(ldconfig -p 2>/dev/null | awk '/libvulkan\.so\.1 .*x86-64/ && !found { print $NF; found = 1 }' || true)"
[ -n "$loader" ] || loader=/usr/lib/chromium/libvulkan.so.1
[ -f "$loader" ] || { echo "gpu-pack: no libvulkan.so.1 here (apt-get install libvulkan1, or the chromium package)" >&2; exit 2; }
cp "$(readlink -f "$loader")" "$root/vulkan/libvulkan.so.1"
if [ -f /usr/lib/chromium/libvk_swiftshader.so ]; then
  cp /usr/lib/chromium/libvk_swiftshader.so /usr/lib/chromium/vk_swiftshader_icd.json "$root/vulkan/swiftshader/"
fi

# The model: the synthetic SD 1.5 with folded weights (never the 3.9 GB full-weights form: it cannot travel).
if [ "${SYNTHETIC:-}" != none ]; then
  if [ -n "${SYNTHETIC_DIR:-}" ]; then
    cp -R "$SYNTHETIC_DIR" "$root/model"
  else
    PYTHON="${PYTHON:-/usr/bin/python3}"
    "$PYTHON" -c 'import torch, onnx' 2>/dev/null || { echo "gpu-pack: $PYTHON lacks torch or onnx to write the synthetic SD 1.5 (PYTHON=..., SYNTHETIC_DIR=... or SYNTHETIC=none)" >&2; exit 2; }
    # shellcheck disable=SC2086 # SYNTHETIC_ARGS is a list of options
    "$PYTHON" tools/bench/synthetic-sd15.py --out "$root/model" --weights folded ${SYNTHETIC_ARGS:-} 2> >(grep -v -i -e warn -e '_C._jit' >&2) > "$work/synthetic.out"
  fi
  [ -f "$root/model/synthetic.json" ] && grep -q '"weights": "folded"' "$root/model/synthetic.json" \
    || { echo "gpu-pack: $root/model is not a folded synthetic-sd15.py folder (synthetic.json says no \"weights\": \"folded\")" >&2; exit 2; }
  if [ -f "$root/model/unet/model.onnx_data" ]; then echo "gpu-pack: the model has external weights: not the folded form" >&2; exit 2; fi
fi

{
  echo "built: $(date -u +%FT%TZ) on $(hostname)"
  echo "node: $(node --version)"
  echo "onnxruntime-node: $(node -p "require('./node_modules/onnxruntime-node/package.json').version")"
  echo "sharp: $(node -p "require('./node_modules/sharp/package.json').version")"
  echo "vulkan loader: $(readlink -f "$loader")"
  echo "model: $(if [ -f "$root/model/synthetic.json" ]; then tr -s '\n ' ' ' < "$root/model/synthetic.json"; else echo none; fi)"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src tools || echo ' (with uncommitted changes)')"
  (cd "$root" && find . -type f -printf '%s %p\n' | sort -k2)
} > "$root/MANIFEST"

tar -C "$work" -cf - "$NAME" | xz -T0 -6 > "$OUT_DIR/$NAME.tar.xz.tmp"
mv "$OUT_DIR/$NAME.tar.xz.tmp" "$OUT_DIR/$NAME.tar.xz"
size=$(stat -c %s "$OUT_DIR/$NAME.tar.xz")
echo "gpu-pack: $OUT_DIR/$NAME.tar.xz, $((size / 1048576)) MiB ($(du -sh "$root" | cut -f1) unpacked)"
[ "$size" -lt $((64 * 1048576)) ] || { echo "gpu-pack: over 64 MiB: it cannot travel as a carried path" >&2; exit 1; }
