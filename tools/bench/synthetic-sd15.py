"""A Stable Diffusion 1.5-shaped model folder with deterministic synthetic weights, for timing without a download.

The topology is SD 1.5's (diffusers' UNet2DConditionModel / CLIPTextModel / AutoencoderKL decoder configs of
runwayml/stable-diffusion-v1-5): UNet channels 320/640/1280/1280, 2 ResNet blocks per level (3 on the way up),
cross-attention transformer blocks on the first three levels and in the middle (8 heads, GEGLU feed-forward,
1×1 proj_in/proj_out), context 77×768, time embedding 1280; CLIP-L text encoder (12 layers, width 768, 12 heads,
vocab 49408, 77 positions, quick-GELU); VAE decoder 512/512/256/128 with a mid attention block. At --base 320 the
UNet has about 860 M parameters. Weights are torch's default initialisation under a fixed seed: the pictures are
noise, the time per step is what SD 1.5 costs. Written on demand (never committed):

    /usr/bin/python3 tools/bench/synthetic-sd15.py --out DIR [--weights folded|full] [--base 320] [--text-width 768]
        [--text-layers 12] [--vae-base 128] [--seed 0]

--weights folded (the default) keeps the files small (5.6 MB for all three at full size, against 3.9 GB): each
weight over 16384 values is stored as a small seeded block (at most 1024 values: up to 32 rows by a few columns, the
kernel whole) that a Tile node repeats to the full shape, times a seeded scale per row (0.5 to 1.5, so repeated rows
differ), scaled to the standard deviation of torch's initialisation of that weight. Every input of those two nodes
is an initializer, so onnxruntime's constant folding (graph optimisation level basic and up, the default) turns them
into ordinary initializers when the session is created: the graph that runs is the full-weights one, node for node,
and no Tile runs per call. The cost moves to load: the folded weights are materialised then (at full size 3.4 GB of
float32, about 2.3 times that at the peak while folding). --weights full writes torch's weights as they are.

Small --base/--text-width/--vae-base give the same topology at toy size (the CPU test of tools/bench/gpu-run.sh).
The folder is in the diffusers ONNX layout imagine loads (model_index.json, unet/, text_encoder/, vae_decoder/,
tokenizer/ from test/fixtures/models/sd-tiny, scheduler/ as SD 1.5's PNDM config). Files over protobuf's 2 GiB
limit keep their weights in model.onnx_data beside model.onnx.
"""
import argparse
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
OPSET = 14


def norm(channels):
    return nn.GroupNorm(32, channels, eps=1e-5)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb):
        super().__init__()
        self.norm1, self.conv1 = norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout) if temb else None
        self.norm2, self.conv2 = norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            h = h + self.time_emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.shortcut(x) + h


class Attention(nn.Module):
    def __init__(self, dim, context_dim, heads):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x, context=None):
        context = x if context is None else context
        b, n, d = x.shape
        h = self.heads
        q = self.to_q(x).reshape(b, n, h, d // h).transpose(1, 2)
        k = self.to_k(context).reshape(b, -1, h, d // h).transpose(1, 2)
        v = self.to_v(context).reshape(b, -1, h, d // h).transpose(1, 2)
        weights = torch.softmax(q @ k.transpose(-1, -2) * (d // h) ** -0.5, dim=-1)
        return self.to_out((weights @ v).transpose(1, 2).reshape(b, n, d))


class Transformer(nn.Module):
    """diffusers' Transformer2DModel with one BasicTransformerBlock, as SD 1.5 (use_linear_projection False)."""

    def __init__(self, channels, context_dim, heads=8):
        super().__init__()
        self.norm = norm(channels)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.norm1, self.attn1 = nn.LayerNorm(channels), Attention(channels, channels, heads)
        self.norm2, self.attn2 = nn.LayerNorm(channels), Attention(channels, context_dim, heads)
        self.norm3 = nn.LayerNorm(channels)
        self.ff_in = nn.Linear(channels, channels * 8)  # GEGLU: value and gate, 4× each
        self.ff_out = nn.Linear(channels * 4, channels)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x, context):
        b, c, hgt, wid = x.shape
        h = self.proj_in(self.norm(x)).reshape(b, c, hgt * wid).transpose(1, 2)
        h = h + self.attn1(self.norm1(h))
        h = h + self.attn2(self.norm2(h), context)
        value, gate = self.ff_in(self.norm3(h)).chunk(2, dim=-1)
        h = h + self.ff_out(value * F.gelu(gate))
        return x + self.proj_out(h.transpose(1, 2).reshape(b, c, hgt, wid))


class UNet(nn.Module):
    def __init__(self, base, context_dim):
        super().__init__()
        chans = [base, base * 2, base * 4, base * 4]
        attn = [True, True, True, False]
        temb = base * 4
        self.base = base
        self.time_1, self.time_2 = nn.Linear(base, temb), nn.Linear(temb, temb)
        self.conv_in = nn.Conv2d(4, base, 3, padding=1)
        self.down = nn.ModuleList()
        skips = [base]
        cin = base
        for level, cout in enumerate(chans):
            for _ in range(2):
                self.down.append(nn.ModuleList([ResBlock(cin, cout, temb), Transformer(cout, context_dim) if attn[level] else nn.Identity()]))
                cin = cout
                skips.append(cout)
            if level < 3:
                self.down.append(nn.ModuleList([nn.Conv2d(cout, cout, 3, stride=2, padding=1)]))
                skips.append(cout)
        self.mid = nn.ModuleList([ResBlock(cin, cin, temb), Transformer(cin, context_dim), ResBlock(cin, cin, temb)])
        self.up = nn.ModuleList()
        for level, cout in reversed(list(enumerate(chans))):
            for _ in range(3):
                self.up.append(nn.ModuleList([ResBlock(cin + skips.pop(), cout, temb), Transformer(cout, context_dim) if attn[level] else nn.Identity()]))
                cin = cout
            if level > 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode='nearest'), nn.Conv2d(cout, cout, 3, padding=1)]))
        self.norm_out, self.conv_out = norm(base), nn.Conv2d(base, 4, 3, padding=1)

    def forward(self, sample, timestep, encoder_hidden_states):
        half = self.base // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = timestep.float()[:, None] * freqs[None]
        emb = self.time_2(F.silu(self.time_1(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))))
        h = self.conv_in(sample)
        hs = [h]
        for block in self.down:
            if len(block) == 1:
                h = block[0](h)
            else:
                h = block[0](h, emb)
                h = block[1](h, encoder_hidden_states) if isinstance(block[1], Transformer) else h
            hs.append(h)
        h = self.mid[0](h, emb)
        h = self.mid[1](h, encoder_hidden_states)
        h = self.mid[2](h, emb)
        for block in self.up:
            if isinstance(block[0], nn.Upsample):
                h = block[1](block[0](h))
            else:
                h = block[0](torch.cat([h, hs.pop()], dim=1), emb)
                h = block[1](h, encoder_hidden_states) if isinstance(block[1], Transformer) else h
        return self.conv_out(F.silu(self.norm_out(h)))


class TextEncoder(nn.Module):
    """CLIP's text transformer: causal self-attention, pre-LayerNorm, quick-GELU MLP, final LayerNorm."""

    def __init__(self, width, layers, heads, vocab=49408, positions=77):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, width)
        self.position_embedding = nn.Parameter(torch.randn(positions, width) * 0.01)
        self.layers = nn.ModuleList(
            nn.ModuleList([nn.LayerNorm(width), Attention(width, width, heads), nn.LayerNorm(width), nn.Linear(width, width * 4), nn.Linear(width * 4, width)])
            for _ in range(layers)
        )
        self.final_layer_norm = nn.LayerNorm(width)
        self.heads = heads

    def forward(self, input_ids):
        n = input_ids.shape[1]
        h = self.token_embedding(input_ids.long()) + self.position_embedding[:n]
        mask = torch.full((n, n), float('-inf')).triu(1)
        for ln1, attn, ln2, fc1, fc2 in self.layers:
            x = ln1(h)
            b, _, d = x.shape
            q = attn.to_q(x).reshape(b, n, self.heads, -1).transpose(1, 2)
            k = attn.to_k(x).reshape(b, n, self.heads, -1).transpose(1, 2)
            v = attn.to_v(x).reshape(b, n, self.heads, -1).transpose(1, 2)
            w = torch.softmax(q @ k.transpose(-1, -2) * (d // self.heads) ** -0.5 + mask, dim=-1)
            h = h + attn.to_out((w @ v).transpose(1, 2).reshape(b, n, d))
            x = fc1(ln2(h))
            h = h + fc2(x * torch.sigmoid(1.702 * x))
        h = self.final_layer_norm(h)
        pooled = h[torch.arange(h.shape[0]), input_ids.long().argmax(dim=-1)]
        return h, pooled


class VaeDecoder(nn.Module):
    """AutoencoderKL's decoder (SD 1.5: block_out_channels 128/256/512/512, 3 ResNet blocks per up level)."""

    def __init__(self, base):
        super().__init__()
        chans = [base * 4, base * 4, base * 2, base]
        self.post_quant_conv = nn.Conv2d(4, 4, 1)
        self.conv_in = nn.Conv2d(4, chans[0], 3, padding=1)
        self.mid_1 = ResBlock(chans[0], chans[0], 0)
        self.mid_norm = norm(chans[0])
        self.mid_attn = Attention(chans[0], chans[0], 1)
        self.mid_2 = ResBlock(chans[0], chans[0], 0)
        self.up = nn.ModuleList()
        cin = chans[0]
        for level, cout in enumerate(chans):
            for _ in range(3):
                self.up.append(ResBlock(cin, cout, 0))
                cin = cout
            if level < 3:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode='nearest'), nn.Conv2d(cout, cout, 3, padding=1)))
        self.norm_out, self.conv_out = norm(base), nn.Conv2d(base, 3, 3, padding=1)

    def forward(self, latent_sample):
        h = self.conv_in(self.post_quant_conv(latent_sample))
        h = self.mid_1(h)
        b, c, hgt, wid = h.shape
        a = self.mid_norm(h).reshape(b, c, hgt * wid).transpose(1, 2)
        h = h + self.mid_attn(a).transpose(1, 2).reshape(b, c, hgt, wid)
        h = self.mid_2(h)
        for block in self.up:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def export(module, args, path, input_names, output_names, dynamic_axes, external=False, fold_seed=None):
    """torch.onnx.export into `path`; weights near protobuf's 2 GiB limit (or all, with `external`) go to one
    `model.onnx_data` beside it. With `fold_seed`, the weights are folded (fold_weights) into one small file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    params = sum(p.numel() for p in module.parameters())
    large = external or params * 4 > 1.8 * 2**30
    with torch.no_grad(), tempfile.TemporaryDirectory() as scratch:
        target = os.path.join(scratch, 'model.onnx') if large or fold_seed is not None else path
        torch.onnx.export(module, args, target, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=OPSET, do_constant_folding=True)
        if fold_seed is not None:
            fold_weights(target, path, fold_seed)  # reads torch's per-tensor files beside `target` where it wrote them
        elif large:
            model = onnx.load(target)  # torch wrote one file per tensor beside it: gather them into one
            onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location='model.onnx_data')
    return params


FOLD_OVER = 16384  # weights with more values than this are folded; biases and norms stay as they are
BLOCK_MAX = 1024  # values in one folded weight's seeded block


def largest_divisor(n, limit):
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def initializer_array(tensor, folder):
    """An initializer's values, read from its external file (memory-mapped) when it has one."""
    if tensor.data_location != onnx.TensorProto.EXTERNAL:
        return onnx.numpy_helper.to_array(tensor)
    info = {entry.key: entry.value for entry in tensor.external_data}
    dtype = onnx.mapping.TENSOR_TYPE_TO_NP_TYPE[tensor.data_type]
    count = int(np.prod(tensor.dims)) if tensor.dims else 1
    data = np.memmap(os.path.join(folder, info['location']), dtype=dtype, mode='r', offset=int(info.get('offset', 0)), shape=(count,))
    return np.array(data).reshape(tuple(tensor.dims))


def fold_weights(source, target, seed):
    """Rewrites the model at `source` (torch's export, weights inline or external) into `target` with every float
    weight over FOLD_OVER values replaced by Tile(block, repeats) * scale under the weight's own name: the same
    graph once onnxruntime has folded those constants, in a file of a few MiB. Returns (weights folded, values)."""
    model = onnx.load(source, load_external_data=False)
    folder = os.path.dirname(source)
    rng = np.random.default_rng(seed)
    kept, nodes, folded, values = [], [], 0, 0
    for tensor in model.graph.initializer:
        array = initializer_array(tensor, folder)
        if array.dtype != np.float32 or array.size <= FOLD_OVER or array.ndim == 0:
            kept.append(onnx.numpy_helper.from_array(np.ascontiguousarray(array), tensor.name))
            continue
        shape = array.shape
        rest = int(np.prod(shape[2:])) if len(shape) > 2 else 1
        rows = largest_divisor(shape[0], max(1, min(32, BLOCK_MAX // rest)))
        cols = largest_divisor(shape[1], max(1, BLOCK_MAX // (rows * rest))) if len(shape) > 1 else None
        block_shape = (rows,) + ((cols,) + shape[2:] if cols else ())
        repeats = (shape[0] // rows,) + ((shape[1] // cols,) + (1,) * (len(shape) - 2) if cols else ())
        # Uniform scale in [0.5, 1.5] has a mean square of 13/12: the product keeps the weight's standard deviation.
        std = float(array.std(dtype=np.float64)) or 1.0
        block = (rng.standard_normal(block_shape) * std / math.sqrt(13 / 12)).astype(np.float32)
        scale = rng.uniform(0.5, 1.5, (shape[0],) + (1,) * (len(shape) - 1)).astype(np.float32)
        name = tensor.name
        kept += [onnx.numpy_helper.from_array(block, f'{name}.fold_block'),
                 onnx.numpy_helper.from_array(np.array(repeats, dtype=np.int64), f'{name}.fold_repeats'),
                 onnx.numpy_helper.from_array(scale, f'{name}.fold_scale')]
        nodes += [onnx.helper.make_node('Tile', [f'{name}.fold_block', f'{name}.fold_repeats'], [f'{name}.fold_tiled'], name=f'{name}.fold_tile'),
                  onnx.helper.make_node('Mul', [f'{name}.fold_tiled', f'{name}.fold_scale'], [name], name=f'{name}.fold_scale')]
        folded += 1
        values += array.size
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    graph_nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes + graph_nodes)
    onnx.checker.check_model(model)
    onnx.save_model(model, target)
    return folded, int(values)


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(value, f, indent=2)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', required=True)
    parser.add_argument('--base', type=int, default=320, help='UNet channels of the first level (SD 1.5: 320)')
    parser.add_argument('--text-width', type=int, default=768, help='CLIP width = the UNet\'s context size (SD 1.5: 768)')
    parser.add_argument('--text-layers', type=int, default=12)
    parser.add_argument('--vae-base', type=int, default=128)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--weights', choices=['folded', 'full'], default='folded',
                        help='folded: small seeded blocks onnxruntime expands at load (a few MiB); full: torch\'s weights (3.9 GB at full size)')
    parser.add_argument('--external', action='store_true', help='with --weights full: the UNet\'s weights in unet/model.onnx_data at any size (as at full size)')
    args = parser.parse_args()
    if args.base % 32 or args.vae_base % 32:
        sys.exit('--base and --vae-base must be multiples of 32 (GroupNorm has 32 groups)')
    out = os.path.abspath(args.out)
    torch.manual_seed(args.seed)
    heads = max(1, args.text_width // 64)
    summary = {}
    fold = (lambda part: args.seed * 3 + part) if args.weights == 'folded' else (lambda part: None)

    text = TextEncoder(args.text_width, args.text_layers, heads).eval()
    ids = torch.zeros(1, 77, dtype=torch.int32)
    summary['text_encoder'] = export(text, (ids,), os.path.join(out, 'text_encoder', 'model.onnx'), ['input_ids'], ['last_hidden_state', 'pooler_output'],
                                     {'input_ids': {0: 'batch'}, 'last_hidden_state': {0: 'batch'}, 'pooler_output': {0: 'batch'}}, fold_seed=fold(0))

    unet = UNet(args.base, args.text_width).eval()
    summary['unet'] = export(unet, (torch.randn(2, 4, 64, 64), torch.tensor([999, 999], dtype=torch.int64), torch.randn(2, 77, args.text_width)),
                             os.path.join(out, 'unet', 'model.onnx'), ['sample', 'timestep', 'encoder_hidden_states'], ['out_sample'],
                             {'sample': {0: 'batch', 2: 'height', 3: 'width'}, 'timestep': {0: 'batch'}, 'encoder_hidden_states': {0: 'batch', 1: 'sequence'},
                              'out_sample': {0: 'batch', 2: 'height', 3: 'width'}}, external=args.external, fold_seed=fold(1))
    write_json(os.path.join(out, 'unet', 'config.json'), {'in_channels': 4, 'sample_size': 64, 'cross_attention_dim': args.text_width,
                                                          'block_out_channels': [args.base, args.base * 2, args.base * 4, args.base * 4]})

    vae = VaeDecoder(args.vae_base).eval()
    summary['vae_decoder'] = export(vae, (torch.randn(1, 4, 64, 64),), os.path.join(out, 'vae_decoder', 'model.onnx'), ['latent_sample'], ['sample'],
                                    {'latent_sample': {0: 'batch', 2: 'height', 3: 'width'}, 'sample': {0: 'batch', 2: 'height', 3: 'width'}}, fold_seed=fold(2))
    write_json(os.path.join(out, 'vae_decoder', 'config.json'), {'latent_channels': 4, 'scaling_factor': 0.18215, 'sample_size': 512})

    fixture = os.path.join(ROOT, 'test', 'fixtures', 'models', 'sd-tiny')
    shutil.copytree(os.path.join(fixture, 'tokenizer'), os.path.join(out, 'tokenizer'), dirs_exist_ok=True)
    write_json(os.path.join(out, 'scheduler', 'scheduler_config.json'), {
        '_class_name': 'PNDMScheduler', 'beta_end': 0.012, 'beta_schedule': 'scaled_linear', 'beta_start': 0.00085,
        'num_train_timesteps': 1000, 'set_alpha_to_one': False, 'skip_prk_steps': True, 'steps_offset': 1, 'trained_betas': None})
    write_json(os.path.join(out, 'model_index.json'), {
        '_class_name': 'OnnxStableDiffusionPipeline', '_diffusers_version': '0.27.2',
        'scheduler': ['diffusers', 'PNDMScheduler'], 'text_encoder': ['diffusers', 'OnnxRuntimeModel'], 'tokenizer': ['transformers', 'CLIPTokenizer'],
        'unet': ['diffusers', 'OnnxRuntimeModel'], 'vae_decoder': ['diffusers', 'OnnxRuntimeModel']})
    write_json(os.path.join(out, 'synthetic.json'), {'topology': 'SD 1.5', 'base': args.base, 'text_width': args.text_width, 'text_layers': args.text_layers,
                                                     'vae_base': args.vae_base, 'seed': args.seed, 'weights': args.weights, 'parameters': summary, 'torch': torch.__version__})
    print(json.dumps({'out': out, 'parameters': summary}))


if __name__ == '__main__':
    main()
