#!/usr/bin/python3
"""Build a stand-in for Stable Diffusion's real safety checker, at its real size, with random weights.

Run with Debian's python3-onnx and numpy (no torch):
    /usr/bin/python3 tools/bench/build_vit_checker.py [OUT_DIR]     (default /tmp/imagine-vit-l-checker)

It writes OUT_DIR/safety_checker/model.onnx (+ model.onnx_data, about 1.2 GB) and OUT_DIR/feature_extractor/
preprocessor_config.json (SD 1.x's). The graph is transformers' StableDiffusionSafetyChecker as diffusers exports it:
the CLIP ViT-L/14 vision tower (patch 14 at 224 px: 257 tokens, 24 pre-LN layers of width 1024, 16 heads, MLP 4096,
quick-GELU), its post-layernorm on the class token, the 1024 → 768 visual projection, then the cosine similarity with
17 concept embeddings against thresholds → `has_nsfw_concepts`. Inputs and outputs as the real export
(`clip_input` [1, 3, 224, 224], `images` [1, H, W, 3] → `out_images`, `has_nsfw_concepts`), batch 1 as the
pipeline calls it. The weights are random, so its verdicts mean nothing: it is there to measure what the real
checker costs per picture (`npx tsx tools/bench/safety-cost.ts --model DIR` with its two folders beside a model's
parts). 303 M parameters, about 81 G multiply-adds per picture.
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WIDTH, HEADS, MLP, LAYERS, PATCH, SIDE, PROJ, CONCEPTS = 1024, 16, 4096, 24, 14, 224, 768, 17
TOKENS = (SIDE // PATCH) ** 2 + 1
rng = np.random.default_rng(0)
nodes, inits = [], []


def weight(name, *shape, scale=0.02):
    inits.append(numpy_helper.from_array((rng.standard_normal(shape, dtype=np.float32) * scale), name))
    return name


def const(name, value, dtype=np.float32):
    inits.append(numpy_helper.from_array(np.array(value, dtype=dtype), name))
    return name


def node(op, inputs, output, **attrs):
    nodes.append(helper.make_node(op, inputs, [output], **attrs))
    return output


def layer_norm(x, name):
    scale = const(f'{name}.weight', np.ones(WIDTH))
    bias = const(f'{name}.bias', np.zeros(WIDTH))
    return node('LayerNormalization', [x, scale, bias], f'{name}.out', axis=-1, epsilon=1e-5)


def linear(x, name, fan_in, fan_out):
    product = node('MatMul', [x, weight(f'{name}.weight', fan_in, fan_out)], f'{name}.mm')
    return node('Add', [product, const(f'{name}.bias', np.zeros(fan_out))], f'{name}.out')


def encoder_layer(x, i):
    p = f'layer{i}'
    h = layer_norm(x, f'{p}.ln1')
    heads = const(f'{p}.heads_shape', [1, TOKENS, HEADS, WIDTH // HEADS], np.int64)
    split = lambda t, n: node('Transpose', [node('Reshape', [t, heads], f'{p}.{n}.r')], f'{p}.{n}.t', perm=[0, 2, 1, 3])
    q = split(node('Mul', [linear(h, f'{p}.q', WIDTH, WIDTH), const(f'{p}.scale', (WIDTH // HEADS) ** -0.5)], f'{p}.qs'), 'q')
    k = node('Transpose', [node('Reshape', [linear(h, f'{p}.k', WIDTH, WIDTH), heads], f'{p}.k.r')], f'{p}.k.t', perm=[0, 2, 3, 1])
    v = split(linear(h, f'{p}.v', WIDTH, WIDTH), 'v')
    attn = node('Softmax', [node('MatMul', [q, k], f'{p}.scores')], f'{p}.attn', axis=-1)
    merged = node('Transpose', [node('MatMul', [attn, v], f'{p}.ctx')], f'{p}.ctx.t', perm=[0, 2, 1, 3])
    merged = node('Reshape', [merged, const(f'{p}.merge_shape', [1, TOKENS, WIDTH], np.int64)], f'{p}.ctx.r')
    x = node('Add', [x, linear(merged, f'{p}.o', WIDTH, WIDTH)], f'{p}.res1')
    h = linear(layer_norm(x, f'{p}.ln2'), f'{p}.fc1', WIDTH, MLP)
    h = node('Mul', [h, node('Sigmoid', [node('Mul', [h, const(f'{p}.gelu', 1.702)], f'{p}.g1')], f'{p}.g2')], f'{p}.gelu.out')
    return node('Add', [x, linear(h, f'{p}.fc2', MLP, WIDTH)], f'{p}.res2')


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else '/tmp/imagine-vit-l-checker'
    os.makedirs(os.path.join(out, 'safety_checker'), exist_ok=True)
    os.makedirs(os.path.join(out, 'feature_extractor'), exist_ok=True)
    patches = node('Conv', ['clip_input', weight('patch.weight', WIDTH, 3, PATCH, PATCH)], 'patches', strides=[PATCH, PATCH])
    patches = node('Transpose', [node('Reshape', ['patches', const('patch_shape', [1, WIDTH, TOKENS - 1], np.int64)], 'patches.r')], 'patches.t', perm=[0, 2, 1])
    x = node('Concat', [weight('class_embedding', 1, 1, WIDTH), patches], 'tokens', axis=1)
    x = node('Add', [x, weight('position_embedding', TOKENS, WIDTH)], 'embedded')
    x = layer_norm(x, 'pre_layrnorm')
    for i in range(LAYERS):
        x = encoder_layer(x, i)
    pooled = node('Gather', [x, const('zero', 0, np.int64)], 'pooled', axis=1)
    pooled = layer_norm(pooled, 'post_layernorm')
    embeds = node('MatMul', [pooled, weight('visual_projection', WIDTH, PROJ)], 'image_embeds')
    norm = node('ReduceL2', [embeds], 'embeds_norm', axes=[1], keepdims=1)
    unit = node('Div', [embeds, norm], 'embeds_unit')
    concepts = rng.standard_normal((PROJ, CONCEPTS), dtype=np.float32)
    concepts /= np.linalg.norm(concepts, axis=0, keepdims=True)
    cos = node('MatMul', [unit, const('concept_embeds_t', concepts)], 'cos')
    score = node('Sub', [cos, const('concept_thresholds', np.full(CONCEPTS, 0.2))], 'concept_scores')
    best = node('ReduceMax', [score], 'best', axes=[1], keepdims=0)
    node('Greater', [best, const('zero_f', 0.0)], 'has_nsfw_concepts')
    node('Identity', ['images'], 'out_images')
    graph = helper.make_graph(
        nodes,
        'stable_diffusion_safety_checker_vit_l14_random',
        [
            helper.make_tensor_value_info('clip_input', TensorProto.FLOAT, [1, 3, SIDE, SIDE]),
            helper.make_tensor_value_info('images', TensorProto.FLOAT, [1, 'height', 'width', 3]),
        ],
        [
            helper.make_tensor_value_info('out_images', TensorProto.FLOAT, [1, 'height', 'width', 3]),
            helper.make_tensor_value_info('has_nsfw_concepts', TensorProto.BOOL, [1]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], producer_name='imagine-bench')
    model.ir_version = 8
    params = sum(int(np.prod(t.dims)) for t in inits)
    onnx.save_model(model, os.path.join(out, 'safety_checker', 'model.onnx'), save_as_external_data=True,
                    all_tensors_to_one_file=True, location='model.onnx_data')
    with open(os.path.join(out, 'feature_extractor', 'preprocessor_config.json'), 'w') as f:
        json.dump({'crop_size': 224, 'do_center_crop': True, 'do_convert_rgb': True, 'do_normalize': True, 'do_resize': True,
                   'feature_extractor_type': 'CLIPFeatureExtractor', 'image_mean': [0.48145466, 0.4578275, 0.40821073],
                   'image_std': [0.26862954, 0.26130258, 0.27577711], 'resample': 3, 'size': 224}, f, indent=2)
    print(f'{out}: {params / 1e6:.1f} M parameters')


if __name__ == '__main__':
    main()
