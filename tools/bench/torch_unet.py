#!/usr/bin/python3
"""Time training/model.py's UNet in PyTorch on one input shape: the other side of the bench's runtime comparison.

  /usr/bin/python3 tools/bench/torch_unet.py --spec '{"channels":[48,64,96],"attn":[false,true,true],"stem":2,
      "in_ch":3,"ctx_dim":128,"sample":[3,32,32],"sequence":32}' --batch 2 --threads 2 --calls 30

Prints one JSON line: torch version, threads, and each call's milliseconds (after warm-up calls). Weights are
random (time does not depend on their values); inference_mode, as a deployment would run it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'training'))
from model import UNet  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument('--spec', required=True, help="bench-model.json's unet + sample + sequence, as JSON")
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--calls', type=int, default=30)
    p.add_argument('--warmup', type=int, default=3)
    args = p.parse_args()
    spec = json.loads(args.spec)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    unet = UNet(ctx_dim=spec['ctx_dim'], channels=tuple(spec['channels']), attn=tuple(spec['attn']),
                stem=spec['stem'], in_ch=spec['in_ch']).eval()
    c, h, w = spec['sample']
    x = torch.randn(args.batch, c, h, w)
    t = torch.full((args.batch,), 500, dtype=torch.int64)
    ctx = torch.randn(args.batch, spec['sequence'], spec['ctx_dim'])
    times = []
    with torch.inference_mode():
        for i in range(args.warmup + args.calls):
            t0 = time.perf_counter()
            unet(x, t, ctx)
            if i >= args.warmup:
                times.append((time.perf_counter() - t0) * 1000)
    print(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(), 'batch': args.batch, 'ms': times}))


if __name__ == '__main__':
    main()
