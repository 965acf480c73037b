"""The text encoder and the UNet of the embedded model (pixel space, 32x32, epsilon prediction).

Conditioning takes two paths, both computed from the text encoder's output alone (so the UNet's ONNX
inputs stay exactly Stable Diffusion's: sample, timestep, encoder_hidden_states):
  * pooled: the [BOS] token's final state (it attends to the whole caption) is projected and added to
    the timestep embedding, which scales and shifts every ResBlock's normalisation (FiLM). A pilot in
    issue 3 found this makes colours learn ~6x faster than cross-attention alone (cf. Imagen).
  * tokens: cross-attention on all token states at the low-resolution levels, to bind attributes to
    the right object in two-object captions.
Only plain ops (matmul, softmax, group_norm, conv) so it exports with torch 1.13 and runs on recent torch.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

PAD_ID = 0


class Attention(nn.Module):
    def __init__(self, dim: int, ctx_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(ctx_dim, dim, bias=False)
        self.v = nn.Linear(ctx_dim, dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        h = self.heads
        q = self.q(x).reshape(b, n, h, c // h).transpose(1, 2)
        k = self.k(ctx).reshape(b, -1, h, c // h).transpose(1, 2)
        v = self.v(ctx).reshape(b, -1, h, c // h).transpose(1, 2)
        w = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(c // h))
        if bias is not None:
            w = w + bias
        o = torch.matmul(w.softmax(dim=-1), v)
        return self.out(o.transpose(1, 2).reshape(b, n, c))


class TextEncoder(nn.Module):
    """Token + position embeddings and a small pre-LN transformer; [PAD] keys are masked out."""

    def __init__(self, vocab_size: int, max_len: int = 32, dim: int = 128, layers: int = 2, heads: int = 4):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            self.blocks.append(
                nn.ModuleDict(
                    {
                        "ln1": nn.LayerNorm(dim),
                        "attn": Attention(dim, dim, heads),
                        "ln2": nn.LayerNorm(dim),
                        "mlp": nn.Sequential(nn.Linear(dim, dim * 2), nn.GELU(), nn.Linear(dim * 2, dim)),
                    }
                )
            )
        self.ln = nn.LayerNorm(dim)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        ids = input_ids.long()
        n = ids.shape[1]
        x = self.tok(ids) + self.pos[:n].unsqueeze(0)
        bias = (ids == PAD_ID).float().unsqueeze(1).unsqueeze(1) * -1e4  # [B, 1, 1, L]
        for blk in self.blocks:
            h = blk["ln1"](x)
            x = x + blk["attn"](h, h, bias)
            x = x + blk["mlp"](blk["ln2"](x))
        return self.ln(x)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * (-math.log(10000.0) / half))
    args = t.float().unsqueeze(1) * freqs.unsqueeze(0)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def groups(ch: int) -> int:
    return 8 if ch % 8 == 0 else 1


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout * 2)
        self.norm2 = nn.GroupNorm(groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Self-attention, cross-attention on the caption tokens, and a small MLP, on the flattened map."""

    def __init__(self, ch: int, ctx_dim: int, tokens: int = 0):
        super().__init__()
        heads = max(1, ch // 32)
        # Learned absolute position of each cell (zero at start): attention itself is blind to where a cell is,
        # and "on the left" needs to know.
        self.pos = nn.Parameter(torch.zeros(1, tokens, ch)) if tokens else None
        self.norm = nn.GroupNorm(groups(ch), ch)
        self.ln1 = nn.LayerNorm(ch)
        self.self_attn = Attention(ch, ch, heads)
        self.ln2 = nn.LayerNorm(ch)
        self.cross = Attention(ch, ctx_dim, heads)
        self.ln3 = nn.LayerNorm(ch)
        self.mlp = nn.Sequential(nn.Linear(ch, ch * 2), nn.GELU(), nn.Linear(ch * 2, ch))
        self.proj_out = nn.Linear(ch, ch)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        t = self.norm(x).reshape(b, c, hh * ww).transpose(1, 2)
        if self.pos is not None:
            t = t + self.pos
        h = self.ln1(t)
        t = t + self.self_attn(h, h)
        t = t + self.cross(self.ln2(t), ctx)
        t = t + self.mlp(self.ln3(t))
        return x + self.proj_out(t).transpose(1, 2).reshape(b, c, hh, ww)


class UNet(nn.Module):
    """channels[i] is the width at level i; stem=2 folds 2x2 pixels into channels first (pixel unshuffle)."""

    def __init__(
        self,
        ctx_dim: int = 128,
        channels: tuple[int, ...] = (64, 96, 128),
        attn: tuple[bool, ...] = (False, True, True),
        stem: int = 2,
        in_ch: int = 3,
        pos_emb: bool = False,
        size: int = 32,
    ):
        super().__init__()
        self.stem = stem
        c0 = channels[0]
        res = [size // stem // 2**i for i in range(len(channels))]
        tok = (lambda i: res[i] * res[i]) if pos_emb else (lambda i: 0)
        # A learned position map added after the stem (zero at start), so every layer can tell left from right.
        self.pos = nn.Parameter(torch.zeros(1, c0, res[0], res[0])) if pos_emb else None
        emb_dim = c0 * 4
        self.t_dim = c0
        self.time = nn.Sequential(nn.Linear(c0, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.pool = nn.Sequential(nn.LayerNorm(ctx_dim), nn.Linear(ctx_dim, emb_dim))
        self.conv_in = nn.Conv2d(in_ch * stem * stem, c0, 3, padding=1)
        self.down = nn.ModuleList()
        self.down_attn = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skip_ch = []
        ch = c0
        for i, c in enumerate(channels):
            self.down.append(ResBlock(ch, c, emb_dim))
            self.down_attn.append(AttnBlock(c, ctx_dim, tok(i)) if attn[i] else nn.Identity())
            ch = c
            skip_ch.append(ch)
            if i < len(channels) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.mid = ResBlock(ch, ch, emb_dim)
        self.mid_attn = AttnBlock(ch, ctx_dim, tok(len(channels) - 1))
        self.up = nn.ModuleList()
        self.up_attn = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(channels))):
            c = channels[i]
            self.up.append(ResBlock(ch + skip_ch[i], c, emb_dim))
            self.up_attn.append(AttnBlock(c, ctx_dim, tok(i)) if attn[i] else nn.Identity())
            ch = c
            if i > 0:
                self.upsample.append(nn.Conv2d(ch, channels[i - 1], 3, padding=1))
                ch = channels[i - 1]
        self.norm_out = nn.GroupNorm(groups(ch), ch)
        self.conv_out = nn.Conv2d(ch, in_ch * stem * stem, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        ctx = encoder_hidden_states
        emb = self.time(timestep_embedding(timestep, self.t_dim)) + self.pool(ctx[:, 0])
        emb = F.silu(emb)
        x = F.pixel_unshuffle(sample, self.stem) if self.stem > 1 else sample
        x = self.conv_in(x)
        if self.pos is not None:
            x = x + self.pos
        skips = []
        for i, (res, at) in enumerate(zip(self.down, self.down_attn)):
            x = res(x, emb)
            x = at(x, ctx) if isinstance(at, AttnBlock) else x
            skips.append(x)
            if i < len(self.downsample):
                x = self.downsample[i](x)
        x = self.mid_attn(self.mid(x, emb), ctx)
        for j, (res, at) in enumerate(zip(self.up, self.up_attn)):
            x = res(torch.cat([x, skips.pop()], dim=1), emb)
            x = at(x, ctx) if isinstance(at, AttnBlock) else x
            if j < len(self.upsample):
                x = self.upsample[j](F.interpolate(x, scale_factor=2.0, mode="nearest"))
        x = self.conv_out(F.silu(self.norm_out(x)))
        return F.pixel_shuffle(x, self.stem) if self.stem > 1 else x


class Model(nn.Module):
    """Both networks, trained jointly."""

    def __init__(self, vocab_size: int, max_len: int, text_dim: int, text_layers: int, unet_kwargs: dict):
        super().__init__()
        self.text = TextEncoder(vocab_size, max_len, text_dim, text_layers)
        self.unet = UNet(ctx_dim=text_dim, **unet_kwargs)

    def forward(self, x: torch.Tensor, t: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, self.text(ids))
