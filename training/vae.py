"""The v2 model's small autoencoder: 64x64x3 pixels <-> a 4-channel latent at 1/4 of the side (16x16x4).

A KL-regularised autoencoder as in latent diffusion (Rombach et al. 2022): the encoder gives a mean and a
log-variance per latent cell, training decodes a sample, and a small KL term keeps the latent's spread from
collapsing so the decoder tolerates the imperfect latents a diffusion model produces. After training,
`scaling_factor` = 1 / std of the latents, as diffusers documents for SD's VAE, so the UNet sees unit variance.

  /usr/bin/python3 training/vae.py --out training/checkpoints/vae --minutes 8 --threads 1

Writes last.pt (weights, optimizer, step, scaling_factor, held-out PSNR). Device: cuda when available.
"""
from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import data

LATENT_CHANNELS = 4


def groups(ch: int) -> int:
    return 8 if ch % 8 == 0 else 1


class Res(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.n1 = nn.GroupNorm(groups(ch), ch)
        self.c1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.n2 = nn.GroupNorm(groups(ch), ch)
        self.c2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(F.silu(self.n2(self.c1(F.silu(self.n1(x))))))


class Encoder(nn.Module):
    """[B, 3, 64, 64] in [-1, 1] -> mean and log-variance, [B, 4, 16, 16] each."""

    def __init__(self, ch: tuple[int, int, int] = (32, 64, 64)):
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch[0], 3, padding=1)
        self.down1 = nn.Conv2d(ch[0], ch[1], 3, stride=2, padding=1)
        self.down2 = nn.Conv2d(ch[1], ch[2], 3, stride=2, padding=1)
        self.res = Res(ch[2])
        self.norm = nn.GroupNorm(groups(ch[2]), ch[2])
        self.conv_out = nn.Conv2d(ch[2], 2 * LATENT_CHANNELS, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.silu(self.conv_in(x))
        h = F.silu(self.down1(h))
        h = self.res(self.down2(h))
        mean, logvar = self.conv_out(F.silu(self.norm(h))).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)


class Decoder(nn.Module):
    """[B, 4, 16, 16] -> [B, 3, 64, 64] in about [-1, 1]."""

    def __init__(self, ch: tuple[int, int, int] = (64, 32, 16)):
        super().__init__()
        self.conv_in = nn.Conv2d(LATENT_CHANNELS, ch[0], 3, padding=1)
        self.res = nn.Sequential(Res(ch[0]), Res(ch[0]))
        self.up1 = nn.Conv2d(ch[0], ch[1], 3, padding=1)
        self.res1 = Res(ch[1])
        self.up2 = nn.Conv2d(ch[1], ch[2], 3, padding=1)
        self.norm = nn.GroupNorm(groups(ch[2]), ch[2])
        self.conv_out = nn.Conv2d(ch[2], 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.res(self.conv_in(z))
        h = self.res1(self.up1(F.interpolate(h, scale_factor=2.0, mode="nearest")))
        h = F.silu(self.up2(F.interpolate(h, scale_factor=2.0, mode="nearest")))
        return self.conv_out(F.silu(self.norm(h)))


class AutoEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.decoder = Decoder()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * math.log10(255.0**2 / max(mse, 1e-12))


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def measure(ae: AutoEncoder, dev: torch.device) -> tuple[float, float]:
    """(PSNR in dB over the held-out eval scenes, reconstructed from the mean latent; std of sampled latents)."""
    scenes = data.eval_set()
    imgs = np.stack([data.render(s) for s in scenes])
    x = torch.from_numpy(imgs.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0).to(dev)
    mean, logvar = ae.encoder(x)
    rec = to_uint8(ae.decoder(mean))
    g = torch.Generator().manual_seed(0)
    z = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=g).to(dev)
    return psnr(rec, imgs), float(z.std())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="training/checkpoints/vae")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--kl", type=float, default=1e-4, help="weight of the per-element KL against the per-pixel MSE")
    p.add_argument("--minutes", type=float, default=8.0)
    p.add_argument("--steps", type=int, default=10**9)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "last.pt")
    ae = AutoEncoder().to(dev)
    opt = torch.optim.AdamW(ae.parameters(), lr=args.lr, weight_decay=0.0, betas=(0.9, 0.99))
    step, elapsed = 0, 0.0
    if os.path.exists(path):
        ck = torch.load(path, map_location="cpu")
        ae.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, elapsed = ck["step"], ck["elapsed"]
        print(f"resuming at step {step}", flush=True)
    print(f"device {dev}, threads {torch.get_num_threads()}, params {sum(q.numel() for q in ae.parameters()):,}", flush=True)
    start = time.time()
    avg = None
    first = step

    def save(extra: dict) -> None:
        torch.save({"model": ae.state_dict(), "opt": opt.state_dict(), "step": step,
                    "elapsed": elapsed + time.time() - start, **extra}, path + ".tmp")
        os.replace(path + ".tmp", path)

    while step < args.steps and time.time() - start < args.minutes * 60:
        rng = np.random.default_rng([args.seed, step])
        g = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        x, _ = data.batch(rng, args.batch)
        x = torch.from_numpy(x).to(dev)
        mean, logvar = ae.encoder(x)
        z = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=g).to(dev)
        rec = ae.decoder(z)
        mse = F.mse_loss(rec, x)
        kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).mean()
        loss = mse + 0.1 * F.l1_loss(rec, x) + args.kl * kl
        # Linear decay to 10 % over the sitting's last third.
        left = args.minutes * 60 - (time.time() - start)
        lr = args.lr * min(1.0, (step + 1) / 100) * max(0.1, min(1.0, left / (args.minutes * 20)))
        for pg in opt.param_groups:
            pg["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ae.parameters(), 1.0)
        opt.step()
        step += 1
        avg = mse.item() if avg is None else 0.95 * avg + 0.05 * mse.item()
        if step % 25 == 0:
            now = time.time() - start
            print(f"step {step} mse {avg:.5f} kl {kl.item():.3f} lr {lr:.1e} {now:.0f}s ({now / (step - first):.2f}s/step)", flush=True)
        if step % 200 == 0:
            save({})
    ae.eval()
    val_psnr, std = measure(ae, dev)
    save({"psnr": val_psnr, "latent_std": std, "scaling_factor": 1.0 / std})
    print(f"saved step {step}: held-out PSNR {val_psnr:.2f} dB, latent std {std:.4f}, scaling_factor {1 / std:.5f}", flush=True)


if __name__ == "__main__":
    main()
