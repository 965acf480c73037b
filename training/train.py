"""Train the embedded model: DDPM (linear betas, 1000 steps), v-prediction (default; epsilon on request),
min-SNR-5 loss weighting,
caption dropout for classifier-free guidance, EMA weights. In pixel space (v1) or, with --vae, on the latents of
the autoencoder trained by vae.py (v2): a pool of scenes is rendered and encoded once (cached beside the
checkpoint) and every step draws a fresh latent sample from each scene's encoded mean and variance. Resumable: every checkpoint holds model, EMA,
optimizer and step; data and noise are drawn from generators seeded by (seed, step), so a resumed run
sees exactly the batches an uninterrupted one would.

Runs on CPU (Debian torch 1.13) or CUDA (recent torch), picked automatically.
Example (the committed weights): see training/README.md.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import time

import numpy as np
import torch

import data
import vae as vae_lib
from checker import score
from model import Model
from warm_start import warm_start

MAX_LEN = 32
T = 1000


def tokenize_ids(captions: list[str], vocab: dict[str, int], max_len: int = MAX_LEN) -> torch.Tensor:
    """Same ids as the exported tokenizer: [BOS] words [EOS], unknown words -> [UNK], padded with [PAD]."""
    out = np.zeros((len(captions), max_len), np.int64)
    for i, c in enumerate(captions):
        ids = [vocab["[BOS]"]] + [vocab.get(w, vocab["[UNK]"]) for w in data.tokenize(c)][: max_len - 2] + [vocab["[EOS]"]]
        out[i, : len(ids)] = ids
    return torch.from_numpy(out)


def with_unknown_word(caption: str, rng: np.random.Generator) -> str:
    """Insert a word outside the vocabulary (it tokenizes to [UNK]) so prompts with strange words still work."""
    words = caption.split(" ")
    words.insert(int(rng.integers(len(words) + 1)), "qzx")
    return " ".join(words)


def schedule(device: torch.device) -> torch.Tensor:
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0).float().to(device)


def build(cfg: dict, vocab_size: int) -> Model:
    lat = cfg.get("latent")
    return Model(
        vocab_size,
        MAX_LEN,
        cfg["text_dim"],
        cfg["text_layers"],
        {"channels": tuple(cfg["channels"]), "attn": tuple(cfg["attn"]), "stem": cfg["stem"], "pos_emb": cfg.get("pos_emb", False),
         "in_ch": lat["channels"] if lat else 3, "size": lat["size"] if lat else cfg.get("image_size", 32)},
    )


RELATION_RE = re.compile(r"\b(left of|right of|top of an?|above|below|under|beneath)\b")
COUNT_RE = re.compile(r"\b(one|two|three)\b")


def kind_of(caption: str) -> str:
    """The scene kind a training caption was made for (data.sample_scene's kinds): relation phrases and number words
    appear only in their own kinds ("top of the picture" is v1's, "on top of a/an" a relation)."""
    return "relation" if RELATION_RE.search(caption) else "count" if COUNT_RE.search(caption) else "v1"


def pool_weights(captions: list[str], shares: dict[str, float]) -> np.ndarray:
    """Per-scene draw probabilities so that each kind makes up `shares` of the batches."""
    kinds = np.array([kind_of(c) for c in captions])
    p = np.zeros(len(captions))
    for k, share in shares.items():
        m = kinds == k
        p[m] = share / max(1, m.sum())
    return p / p.sum()


def load_vae(path: str, dev: torch.device) -> tuple[vae_lib.AutoEncoder, float]:
    ck = torch.load(path, map_location="cpu")
    ae = vae_lib.AutoEncoder()
    ae.load_state_dict(ck["model"])
    for q in ae.parameters():
        q.requires_grad_(False)
    return ae.to(dev).eval(), float(ck["scaling_factor"])


@torch.no_grad()
def build_pool(path: str, ae: vae_lib.AutoEncoder, n: int, seed: int, dev: torch.device) -> dict:
    """n training scenes rendered and encoded once: latent mean and log-variance (fp16), captions, and the
    pictures at a quarter of the area (for the warm start's least-squares fit). Cached at `path`."""
    if os.path.exists(path):
        pool = torch.load(path)
        if len(pool["captions"]) == n:
            return pool
    t0 = time.time()
    means, logvars, small, caps = [], [], [], []
    for k in range(0, n, 256):
        rng = np.random.default_rng([seed, 7_777_777, k])
        x, c = data.batch(rng, min(256, n - k))
        x = torch.from_numpy(x).to(dev)
        m, lv = ae.encoder(x)
        means.append(m.half().cpu())
        logvars.append(lv.half().cpu())
        if k < 8192:
            small.append(torch.nn.functional.avg_pool2d(x, 2).cpu())
        caps += c
    pool = {"mean": torch.cat(means), "logvar": torch.cat(logvars), "small": torch.cat(small), "captions": caps}
    torch.save(pool, path)
    print(f"pool of {n} scenes encoded in {time.time() - t0:.0f}s", flush=True)
    return pool


@torch.no_grad()
def fit_io_layers(model: Model, pool: dict, sf: float) -> tuple[torch.Tensor, torch.Tensor]:
    """After a warm start from the pixel-space v1: v1's stem saw 2x2-unshuffled pixels of a 32x32 picture, 12
    channels per cell covering the same area as one latent cell of v2. Least-squares maps latent <-> those 12
    channels turn v1's input and output convolutions into ones on latents, so the warm-started network starts
    from (roughly) what it computed."""
    n = pool["small"].shape[0]
    z = (pool["mean"][:n].float() * sf).permute(0, 2, 3, 1).reshape(-1, 4)
    u = torch.nn.functional.pixel_unshuffle(pool["small"], 2).permute(0, 2, 3, 1).reshape(-1, 12)
    ones = torch.ones(z.shape[0], 1)
    m = torch.linalg.lstsq(torch.cat([z, ones], 1), u).solution  # [5, 12]: u ~ [z, 1] @ m
    back = torch.linalg.lstsq(u, z).solution  # [12, 4]: z ~ u @ back
    return m, back


def apply_io_fit(model: Model, old_in: torch.Tensor, old_in_b: torch.Tensor, old_out: torch.Tensor, old_out_b: torch.Tensor,
                 m: torch.Tensor, back: torch.Tensor) -> None:
    with torch.no_grad():
        un = model.unet
        un.conv_in.weight.copy_(torch.einsum("ojhw,cj->ochw", old_in, m[:4]))
        un.conv_in.bias.copy_(old_in_b + torch.einsum("ojhw,j->o", old_in, m[4]))
        un.conv_out.weight.copy_(torch.einsum("jihw,jc->cihw", old_out, back))
        un.conv_out.bias.copy_(old_out_b @ back)


@torch.no_grad()
def sample(model: Model, captions: list[str], vocab: dict, steps: int = 20, guidance: float = 4.0, seed: int = 0) -> np.ndarray:
    """DDIM (eta 0, 'leading' spacing, steps_offset 1, no clipping: the exported scheduler config) with CFG.
    A latent model (model.vae = (autoencoder, scaling_factor)) decodes latents / scaling_factor at the end."""
    dev = next(model.parameters()).device
    ac = schedule(dev)
    n = len(captions)
    ctx = model.text(tokenize_ids(captions + [""] * n, vocab).to(dev))
    g = torch.Generator().manual_seed(seed)
    vae = getattr(model, "vae", None)
    shape = (n, 4, data.SIZE // 4, data.SIZE // 4) if vae else (n, 3, data.SIZE, data.SIZE)
    x = torch.randn(*shape, generator=g).to(dev)
    ratio = T // steps
    v_pred = model_prediction_type(model) == "v_prediction"
    ts = [int(i * ratio) + 1 for i in range(steps)][::-1]
    for i, t in enumerate(ts):
        tt = torch.full((2 * n,), t, dtype=torch.long, device=dev)
        out = model.unet(torch.cat([x, x]), tt, ctx)
        o_c, o_u = out[:n], out[n:]
        o = o_u + guidance * (o_c - o_u)
        a_t = ac[t]
        a_prev = ac[t - ratio] if t - ratio >= 0 else ac[0]
        if v_pred:
            x0 = a_t.sqrt() * x - (1 - a_t).sqrt() * o
            e = a_t.sqrt() * o + (1 - a_t).sqrt() * x
        else:
            x0 = (x - (1 - a_t).sqrt() * o) / a_t.sqrt()
            e = o
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * e
    if vae:
        x = vae[0].decoder(x / vae[1])
    img = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return img


def model_prediction_type(model: Model) -> str:
    return getattr(model, "prediction_type", "epsilon")


def evaluate(model: Model, vocab: dict, n: int, guidance: float) -> dict:
    """n of v1's held-out prompts, plus n/2 relation and n/2 count prompts when the model is v2's (latent)."""
    ev = data.eval_set()
    scenes = ev[:n] + (ev[96 : 96 + n // 2] + ev[144 : 144 + n // 2] if getattr(model, "vae", None) else [])
    n = len(scenes)
    imgs = []
    for i in range(0, n, 32):
        imgs.append(sample(model, [s.caption for s in scenes[i : i + 32]], vocab, guidance=guidance, seed=i))
    imgs = np.concatenate(imgs)
    tally: dict[str, list[int]] = {}
    for img, s in zip(imgs, scenes):
        for k, ok in score(img, s.stated).items():
            tally.setdefault(k, [0, 0])
            tally[k][0] += int(ok)
            tally[k][1] += 1
    return {k: round(a / b, 3) for k, (a, b) in sorted(tally.items())}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="training/checkpoints/run")
    p.add_argument("--channels", default="64,96,128")
    p.add_argument("--attn", default="0,1,1")
    p.add_argument("--stem", type=int, default=2)
    p.add_argument("--text-dim", type=int, default=128)
    p.add_argument("--text-layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--steps", type=int, default=100000, help="stop after this many optimizer steps")
    p.add_argument("--minutes", type=float, default=1e9, help="stop after this much wall time (this sitting)")
    p.add_argument("--decay-minutes", type=float, default=0.0, help="anneal the LR over the sitting's last minutes")
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--p-uncond", type=float, default=0.1)
    p.add_argument("--p-unk", type=float, default=0.1, help="share of captions given an unknown word")
    p.add_argument("--snr-gamma", type=float, default=5.0)
    p.add_argument("--prediction", default="v_prediction", choices=["epsilon", "v_prediction"])
    p.add_argument("--pos-emb", action="store_true", help="learned position embeddings (also added on resume)")
    p.add_argument("--p-pos", default="", help="share of captions stating positions: ONE,TWO (default 0.7,0.5); also on resume")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt-minutes", type=float, default=5.0)
    p.add_argument("--eval-minutes", type=float, default=10.0)
    p.add_argument("--eval-n", type=int, default=64)
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument("--vae", default="", help="autoencoder checkpoint (vae.py): train on its latents (v2)")
    p.add_argument("--pool", type=int, default=50000, help="scenes encoded once for latent training")
    p.add_argument("--kind-shares", default="", help="latent pool draws: V1,RELATION,COUNT shares of a batch "
                   "(default: as the pool was made, data.KIND_SHARES); also on resume")
    p.add_argument("--init", default="", help="warm start a new run from an exported model folder (e.g. v1's)")
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    os.makedirs(args.out, exist_ok=True)
    vocab_list = data.vocabulary()
    vocab = {w: i for i, w in enumerate(vocab_list)}
    ckpt_path = os.path.join(args.out, "last.pt")

    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)  # our own file: config, optimizer state
        cfg = ck["config"]
        print(f"resuming from {ckpt_path} at step {ck['step']}", flush=True)
        if args.pos_emb and not cfg.get("pos_emb", False):
            # Warm start: the new position parameters start at zero, so the network computes what it did.
            cfg["pos_emb"] = True
            cfg.setdefault("changes", []).append({"step": ck["step"], "change": "added position embeddings"})
            print("adding position embeddings to the resumed model", flush=True)
    else:
        ck = None
        cfg = {
            "channels": [int(c) for c in args.channels.split(",")],
            "attn": [c == "1" for c in args.attn.split(",")],
            "stem": args.stem,
            "text_dim": args.text_dim,
            "text_layers": args.text_layers,
            "vocab": vocab_list,
            "max_len": MAX_LEN,
            "batch": args.batch,
            "lr": args.lr,
            "warmup": args.warmup,
            "ema": args.ema,
            "p_uncond": args.p_uncond,
            "p_unk": args.p_unk,
            "snr_gamma": args.snr_gamma,
            "seed": args.seed,
            "betas": ["linear", 1e-4, 0.02, T],
            "prediction_type": args.prediction,
            "pos_emb": args.pos_emb,
            "image_size": data.SIZE,
        }
        if args.vae:
            cfg["latent"] = {"channels": vae_lib.LATENT_CHANNELS, "size": data.SIZE // 4, "vae": args.vae, "pool": args.pool}
        if args.init:
            cfg["init"] = args.init
    if args.p_pos:
        one, two = (float(v) for v in args.p_pos.split(","))
        if ck and cfg.get("p_pos") != [one, two]:
            cfg.setdefault("changes", []).append({"step": ck["step"], "change": f"p_pos {cfg.get('p_pos', [0.7, 0.5])} -> {[one, two]}"})
        cfg["p_pos"] = [one, two]
    data.P_POS["one"], data.P_POS["two"] = cfg.get("p_pos", [0.7, 0.5])
    if args.kind_shares:
        shares = [float(v) for v in args.kind_shares.split(",")]
        if ck and cfg.get("kind_shares") != shares:
            cfg.setdefault("changes", []).append({"step": ck["step"], "change": f"kind shares {cfg.get('kind_shares')} -> {shares}"})
        cfg["kind_shares"] = shares
    model = build(cfg, len(vocab_list))
    pool = None
    if cfg.get("latent"):
        ae, sf = load_vae(cfg["latent"]["vae"], dev)
        cfg["latent"]["scaling_factor"] = sf
        pool = build_pool(os.path.join(args.out, "pool.pt"), ae, cfg["latent"]["pool"], cfg["seed"], dev)
    if not ck and cfg.get("init"):
        report = warm_start(model, cfg["init"], vocab_list)
        print(f"warm start from {cfg['init']}: {len(report['copied'])} tensors copied, fresh: {report['fresh']}", flush=True)
        if pool is not None:
            from warm_start import onnx_params
            old = onnx_params(os.path.join(cfg["init"], "unet", "model.onnx"))
            m, back = fit_io_layers(model, pool, sf)
            apply_io_fit(model, *(torch.from_numpy(old[k].copy()) for k in ("conv_in.weight", "conv_in.bias", "conv_out.weight", "conv_out.bias")), m, back)
            print("input and output convolutions fitted to the latents", flush=True)
    draw_p = None
    if pool is not None and cfg.get("kind_shares"):
        draw_p = pool_weights(pool["captions"], dict(zip(("v1", "relation", "count"), cfg["kind_shares"])))
    model = model.to(dev)
    model.prediction_type = cfg["prediction_type"]
    ema = copy.deepcopy(model).eval()
    ema.prediction_type = cfg["prediction_type"]
    if pool is not None:
        ema.vae = (ae, sf)
    for q in ema.parameters():
        q.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=0.01, betas=(0.9, 0.99))
    step, elapsed, hist = 0, 0.0, []
    if ck:
        missing = model.load_state_dict(ck["model"], strict=False).missing_keys
        ema.load_state_dict(ck["ema"], strict=False)
        if not missing:
            opt.load_state_dict(ck["opt"])
        else:
            # New parameters: carry Adam's moments over by name for the old ones (state is keyed by position).
            names = [n for n, _ in model.named_parameters()]
            old = [n for n in names if n not in missing]
            index = {n: i for i, n in enumerate(names)}
            sd = ck["opt"]
            state = {index[old[i]]: v for i, v in sd["state"].items()}
            groups = [{**sd["param_groups"][0], "params": list(range(len(names)))}]
            opt.load_state_dict({"state": state, "param_groups": groups})
            print(f"new parameters: {missing}", flush=True)
        step, elapsed, hist = ck["step"], ck["elapsed"], ck.get("hist", [])
    n_params = sum(q.numel() for q in model.parameters())
    print(f"device {dev}, threads {torch.get_num_threads()}, params {n_params:,} "
          f"(unet {sum(q.numel() for q in model.unet.parameters()):,}), config {json.dumps({k: v for k, v in cfg.items() if k != 'vocab'})}", flush=True)

    ac = schedule(dev)
    start = time.time()
    last_ckpt = last_eval = time.time()
    loss_avg = None

    def save() -> None:
        tmp = ckpt_path + ".tmp"
        torch.save({"config": cfg, "model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                    "step": step, "elapsed": elapsed + time.time() - start, "hist": hist}, tmp)
        os.replace(tmp, ckpt_path)

    while step < args.steps and (time.time() - start) < args.minutes * 60:
        rng = np.random.default_rng([cfg["seed"], step])
        g = torch.Generator().manual_seed(cfg["seed"] * 1_000_003 + step)
        if pool is not None:
            n_pool = len(pool["captions"])
            idx = torch.from_numpy(rng.choice(n_pool, size=cfg["batch"], p=draw_p) if draw_p is not None else rng.integers(n_pool, size=cfg["batch"]))
            eps = torch.randn((cfg["batch"], *pool["mean"].shape[1:]), generator=g)
            mean, logvar = pool["mean"][idx].float(), pool["logvar"][idx].float()
            x0 = ((mean + (0.5 * logvar).exp() * eps) * sf).numpy()
            caps = [pool["captions"][i] for i in idx.tolist()]
        else:
            x0, caps = data.batch(rng, cfg["batch"])
        drop = rng.random(len(caps)) < cfg["p_uncond"]
        caps = ["" if d else c for c, d in zip(caps, drop)]
        caps = [with_unknown_word(c, rng) if c and rng.random() < cfg.get("p_unk", 0.0) else c for c in caps]
        ids = tokenize_ids(caps, vocab).to(dev)
        x0 = torch.from_numpy(x0).to(dev)
        t = torch.randint(0, T, (len(caps),), generator=g).to(dev)
        noise = torch.randn(x0.shape, generator=g).to(dev)
        a = ac[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        pred = model(xt, t, ids)
        snr = ac[t] / (1 - ac[t])
        # min-SNR-gamma weighting (Hang et al. 2023): the same x0-space weights for either parametrization.
        if cfg["prediction_type"] == "v_prediction":
            target = a.sqrt() * noise - (1 - a).sqrt() * x0
            w = torch.clamp(snr, max=cfg["snr_gamma"]) / (snr + 1)
        else:
            target = noise
            w = torch.clamp(snr, max=cfg["snr_gamma"]) / snr
        loss = (w * ((pred - target) ** 2).mean(dim=(1, 2, 3))).mean()

        # Warm-up by step; then, since a sitting is bounded by wall time, a linear decay to 10% over its last
        # --decay-minutes (annealing the LR at the end of a fixed budget gives a cleaner final model).
        left = args.minutes * 60 - (time.time() - start)
        lr = cfg["lr"] * min(1.0, (step + 1) / cfg["warmup"]) * max(0.1, min(1.0, left / max(1.0, args.decay_minutes * 60)))
        for pg in opt.param_groups:
            pg["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        decay = min(cfg["ema"], (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        if step % 25 == 0:
            now = time.time() - start
            print(f"step {step} loss {loss_avg:.4f} lr {lr:.2e} {now:.0f}s ({now / max(1, step - (ck['step'] if ck else 0)):.2f}s/step)", flush=True)
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            save()
            last_ckpt = time.time()
        if args.eval_minutes > 0 and time.time() - last_eval > args.eval_minutes * 60:
            te = time.time()
            acc = evaluate(ema, vocab, args.eval_n, args.guidance)
            hist.append({"step": step, "loss": loss_avg, "eval": acc, "minutes": (elapsed + time.time() - start) / 60})
            print(f"EVAL step {step}: {acc} ({time.time() - te:.0f}s)", flush=True)
            last_eval = time.time()
    save()
    print(f"saved step {step} to {ckpt_path}", flush=True)
    if args.eval_minutes > 0:
        print(f"FINAL EVAL step {step}: {evaluate(ema, vocab, args.eval_n, args.guidance)}", flush=True)


if __name__ == "__main__":
    main()
