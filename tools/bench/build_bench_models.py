#!/usr/bin/python3
"""Build the models `npm run bench` measures, into a cache folder (never committed: tens of MB).

  /usr/bin/python3 tools/bench/build_bench_models.py --out node_modules/.cache/imagine-bench [--sd] [--shapes [--ckpt PATH]]

--sd      sd-bench/: a random-weight model in the Stable Diffusion ONNX contract at a meaningful size: 4-channel
          64x64 latents (512x512 pixels), the CLIP-style text encoder, tokenizer and VAE decoder of
          test/fixtures/build-test-models.py, and as UNet the embedded model's own network (training/model.py's
          UNet) widened to channels 64,128,192 with attention at 32x32 and 16x16, no pixel-unshuffle stem.
          Height and width are symbolic, as in diffusers' ONNX exports.
--shapes  shapes-arch/: the embedded model's architecture exported by training/export.py, from --ckpt when given
          (a training checkpoint), else from random weights with the committed run's configuration.
Writes <out>/<name>/bench-model.json with what the model is (parameters, config) for the report.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile

import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'training'))

from model import UNet  # noqa: E402  (training/model.py)

# The configuration of the run that trains the committed embedded model (its command line in training/runs/).
SHAPES_CONFIG = {'channels': [48, 64, 96], 'attn': [False, True, True], 'stem': 2, 'text_dim': 128, 'text_layers': 2}
SD_BENCH_UNET = {'channels': (64, 128, 192), 'attn': (False, True, True), 'stem': 1, 'in_ch': 4}
SD_LATENT = 64


def fixtures_builder():
    """test/fixtures/build-test-models.py as a module (its name has dashes; its __main__ block does not run)."""
    path = os.path.join(ROOT, 'test', 'fixtures', 'build-test-models.py')
    spec = importlib.util.spec_from_file_location('build_test_models', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomize(module: nn.Module, seed: int) -> None:
    """training/model.py zero-initialises its output convolutions; random weights keep every layer's output live."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)


def build_sd_bench(out: str) -> None:
    btm = fixtures_builder()
    folder = os.path.join(out, 'sd-bench')
    btm.clean_folder(folder)
    torch.manual_seed(11)
    btm.build_text_encoder(folder, torch.int32)
    unet = UNet(ctx_dim=btm.TEXT_DIM, **SD_BENCH_UNET)
    randomize(unet, 11)
    unet.eval()
    args = (torch.randn(2, 4, SD_LATENT, SD_LATENT), torch.tensor([999, 999], dtype=torch.int64),
            torch.randn(2, btm.MAX_LEN, btm.TEXT_DIM))
    btm.export(unet, args, os.path.join(folder, 'unet', 'model.onnx'), ['sample', 'timestep', 'encoder_hidden_states'],
               ['out_sample'], {'sample': {0: 'batch', 2: 'height', 3: 'width'}, 'timestep': {0: 'batch'},
                                'encoder_hidden_states': {0: 'batch'}, 'out_sample': {0: 'batch', 2: 'height', 3: 'width'}})
    config = btm.unet_config(4, SD_LATENT)
    config['block_out_channels'] = list(SD_BENCH_UNET['channels'])
    btm.write_json(os.path.join(folder, 'unet', 'config.json'), config)
    btm.build_vae(folder, 0.18215)
    btm.write_tokenizer(os.path.join(folder, 'tokenizer'))
    btm.write_json(os.path.join(folder, 'scheduler', 'scheduler_config.json'), btm.PNDM_SD15)
    btm.write_json(os.path.join(folder, 'model_index.json'), btm.model_index('PNDMScheduler'))
    btm.write_json(os.path.join(folder, 'bench-model.json'), {
        'what': 'random weights; SD ONNX contract; UNet = training/model.py UNet at SD latent shape',
        'unet': {**{k: list(v) if isinstance(v, tuple) else v for k, v in SD_BENCH_UNET.items()}, 'ctx_dim': btm.TEXT_DIM},
        'unetParameters': sum(p.numel() for p in unet.parameters()),
        'sample': [4, SD_LATENT, SD_LATENT], 'sequence': btm.MAX_LEN,
    })


def build_shapes(out: str, ckpt: str | None) -> None:
    import data  # training/data.py
    import export  # training/export.py
    from train import build

    folder = os.path.join(out, 'shapes-arch')
    if ckpt is None:
        cfg = {**SHAPES_CONFIG, 'vocab': data.vocabulary(), 'betas': ['linear', 1e-4, 0.02, 1000], 'prediction_type': 'epsilon'}
        torch.manual_seed(12)
        model = build(cfg, len(cfg['vocab']))
        randomize(model.unet, 12)
        fd, ckpt = tempfile.mkstemp(suffix='.pt')
        os.close(fd)
        torch.save({'config': cfg, 'ema': model.state_dict(), 'step': 0, 'elapsed': 0.0}, ckpt)
        source = 'random weights, the committed run\'s configuration'
    else:
        source = f'checkpoint {os.path.relpath(ckpt, ROOT)}'
    argv = sys.argv
    sys.argv = ['export.py', '--ckpt', ckpt, '--out', folder]
    try:
        export.main()
    finally:
        sys.argv = argv
    with open(os.path.join(folder, 'training.json')) as f:
        info = json.load(f)
    cfg = info['config']
    with open(os.path.join(folder, 'bench-model.json'), 'w') as f:
        json.dump({'what': f'imagine-shapes architecture from {source}', 'step': info['step'],
                   'unet': {'channels': cfg['channels'], 'attn': cfg['attn'], 'stem': cfg['stem'], 'in_ch': 3,
                            'ctx_dim': cfg['text_dim']},
                   'unetParameters': info['parameters']['unet'], 'sample': [3, 32, 32], 'sequence': export.MAX_LEN}, f, indent=2)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument('--out', required=True)
    p.add_argument('--sd', action='store_true')
    p.add_argument('--shapes', action='store_true')
    p.add_argument('--ckpt')
    args = p.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    os.makedirs(args.out, exist_ok=True)
    if args.sd:
        build_sd_bench(args.out)
    if args.shapes:
        build_shapes(args.out, args.ckpt)


if __name__ == '__main__':
    main()
