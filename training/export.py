"""Export a checkpoint's EMA weights to the diffusers ONNX layout in models/imagine-shapes/.

  /usr/bin/python3 training/export.py --ckpt training/checkpoints/v2/last.pt --out models/imagine-shapes

Writes model_index.json, text_encoder/model.onnx, unet/model.onnx (+ config.json), tokenizer/ (a word-level
tokenizer.json that @huggingface/transformers' AutoTokenizer loads), scheduler/scheduler_config.json and
training.json (the run's config and eval history, for the model card). A latent model (v2, trained with --vae)
also gets vae_decoder/ and vae_encoder/ (model.onnx + the AutoencoderKL config.json diffusers writes, with the
measured scaling_factor); a pixel-space one (v1) has none.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from train import MAX_LEN, build, load_vae  # noqa: E402

DIFFUSERS_VERSION = "0.27.2"


def write_tokenizer(out: str, vocab: list[str], max_len: int) -> None:
    os.makedirs(out, exist_ok=True)
    ids = {w: i for i, w in enumerate(vocab)}
    specials = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": ids[s], "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
            for s in specials
        ],
        "normalizer": {"type": "Lowercase"},
        # Whitespace splits on \w+|[^\w\s]+, the same regex as data.tokenize.
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[BOS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[EOS]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[BOS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[EOS]", "type_id": 1}}],
            "special_tokens": {s: {"id": s, "ids": [ids[s]], "tokens": [s]} for s in ("[BOS]", "[EOS]")},
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordLevel", "vocab": ids, "unk_token": "[UNK]"},
    }
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(tok, f, indent=1)
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": max_len,
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
        "bos_token": "[BOS]",
        "eos_token": "[EOS]",
        "do_lower_case": True,
        "clean_up_tokenization_spaces": False,
        "padding_side": "right",
        "truncation_side": "right",
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    with open(os.path.join(out, "special_tokens_map.json"), "w") as f:
        json.dump({"pad_token": "[PAD]", "unk_token": "[UNK]", "bos_token": "[BOS]", "eos_token": "[EOS]"}, f, indent=1)


def write_json(path: str, obj: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


class _VaeEncoderGraph(torch.nn.Module):
    """vae_encoder/model.onnx: `sample` -> `latent_sample`, the distribution's mean (deterministic; the pipeline
    adds img2img's noise itself)."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        return self.encoder(sample)[0]


def export_vae(out: str, lat: dict, opset: int) -> None:
    ae, sf = load_vae(lat["vae"], torch.device("cpu"))
    factor = 4
    img = lat["size"] * factor
    for part in ("vae_decoder", "vae_encoder"):
        os.makedirs(os.path.join(out, part), exist_ok=True)
    with torch.no_grad():
        z = torch.randn(1, lat["channels"], lat["size"], lat["size"])
        torch.onnx.export(
            ae.decoder, (z,), os.path.join(out, "vae_decoder", "model.onnx"),
            input_names=["latent_sample"], output_names=["sample"],
            dynamic_axes={"latent_sample": {0: "batch", 2: "height", 3: "width"}, "sample": {0: "batch", 2: "height", 3: "width"}},
            opset_version=opset, do_constant_folding=True,
        )
        x = torch.zeros(1, 3, img, img)
        torch.onnx.export(
            _VaeEncoderGraph(ae.encoder), (x,), os.path.join(out, "vae_encoder", "model.onnx"),
            input_names=["sample"], output_names=["latent_sample"],
            dynamic_axes={"sample": {0: "batch", 2: "height", 3: "width"}, "latent_sample": {0: "batch", 2: "height", 3: "width"}},
            opset_version=opset, do_constant_folding=True,
        )
    # diffusers' AutoencoderKL config keys; block_out_channels has one entry per resolution (3: a factor of 4),
    # which is how the pipeline (and diffusers) derive the latent's scale.
    config = {
        "_class_name": "AutoencoderKL",
        "_diffusers_version": DIFFUSERS_VERSION,
        "act_fn": "silu",
        "block_out_channels": [16, 32, 64],
        "down_block_types": ["DownEncoderBlock2D"] * 3,
        "up_block_types": ["UpDecoderBlock2D"] * 3,
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": lat["channels"],
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "sample_size": img,
        "scaling_factor": round(sf, 5),
    }
    for part in ("vae_decoder", "vae_encoder"):
        write_json(os.path.join(out, part, "config.json"), config)


def vae_summary(path: str) -> dict:
    vk = torch.load(path, map_location="cpu")
    ae_params = sum(v.numel() for v in vk["model"].values())
    return {"step": vk["step"], "train_minutes": round(vk["elapsed"] / 60, 1), "heldout_psnr_db": round(vk["psnr"], 2),
            "latent_std": round(vk["latent_std"], 4), "scaling_factor": round(vk["scaling_factor"], 5), "parameters": ae_params}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", required=True)
    p.add_argument("--out", default="models/imagine-shapes")
    p.add_argument("--opset", type=int, default=14)
    args = p.parse_args()

    ck = torch.load(args.ckpt, map_location="cpu", weights_only=False)  # our own checkpoint
    cfg = ck["config"]
    model = build(cfg, len(cfg["vocab"]))
    model.load_state_dict(ck["ema"])
    model.eval()
    out = args.out
    lat = cfg.get("latent")
    size = lat["size"] if lat else cfg.get("image_size", 32)
    channels = lat["channels"] if lat else 3
    dim = cfg["text_dim"]

    os.makedirs(os.path.join(out, "text_encoder"), exist_ok=True)
    os.makedirs(os.path.join(out, "unet"), exist_ok=True)
    ids = torch.zeros(2, MAX_LEN, dtype=torch.int32)
    ids[:, 0], ids[:, 1] = 2, 3
    with torch.no_grad():
        torch.onnx.export(
            model.text, (ids,), os.path.join(out, "text_encoder", "model.onnx"),
            input_names=["input_ids"], output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "last_hidden_state": {0: "batch", 1: "sequence"}},
            opset_version=args.opset, do_constant_folding=True,
        )
        ctx = model.text(ids)
        x = torch.randn(2, channels, size, size)
        t = torch.tensor([999, 1], dtype=torch.int64)
        torch.onnx.export(
            model.unet, (x, t, ctx), os.path.join(out, "unet", "model.onnx"),
            input_names=["sample", "timestep", "encoder_hidden_states"], output_names=["out_sample"],
            dynamic_axes={"sample": {0: "batch"}, "timestep": {0: "batch"},
                          "encoder_hidden_states": {0: "batch", 1: "sequence"}, "out_sample": {0: "batch"}},
            opset_version=args.opset, do_constant_folding=True,
        )
    if lat:
        export_vae(out, lat, args.opset)
    write_tokenizer(os.path.join(out, "tokenizer"), cfg["vocab"], MAX_LEN)
    write_json(os.path.join(out, "model_index.json"), {
        "_class_name": "OnnxStableDiffusionPipeline",
        "_diffusers_version": DIFFUSERS_VERSION,
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["diffusers", "OnnxRuntimeModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "unet": ["diffusers", "OnnxRuntimeModel"],
        **({"vae_decoder": ["diffusers", "OnnxRuntimeModel"], "vae_encoder": ["diffusers", "OnnxRuntimeModel"]} if lat else {}),
    })
    _, beta_start, beta_end, steps = cfg["betas"]
    write_json(os.path.join(out, "scheduler", "scheduler_config.json"), {
        "_class_name": "DDIMScheduler",
        "_diffusers_version": DIFFUSERS_VERSION,
        "beta_schedule": "linear",
        "beta_start": beta_start,
        "beta_end": beta_end,
        "num_train_timesteps": steps,
        "prediction_type": cfg["prediction_type"],
        # No clipping: diffusers' DDIM clips x0 but keeps the model's epsilon, and with guidance that mismatch drove
        # whole backgrounds to the wrong colour (measured: "white background" came out purple at guidance 4 and 7.5).
        "clip_sample": False,
        "clip_sample_range": 1.0,
        "thresholding": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "timestep_spacing": "leading",
        "trained_betas": None,
    })
    write_json(os.path.join(out, "unet", "config.json"), {
        "_class_name": "UNet2DConditionModel",
        "sample_size": size,
        "in_channels": channels,
        "out_channels": channels,
        "cross_attention_dim": dim,
        "block_out_channels": cfg["channels"],
    })
    write_json(os.path.join(out, "training.json"), {
        "config": {k: v for k, v in cfg.items() if k != "vocab"},
        "step": ck["step"],
        "train_minutes": round(ck["elapsed"] / 60, 1),
        "parameters": {"text_encoder": sum(q.numel() for q in model.text.parameters()),
                       "unet": sum(q.numel() for q in model.unet.parameters())},
        "history": ck.get("hist", []),
        **({"vae": vae_summary(lat["vae"])} if lat else {}),
    })
    print(f"exported step {ck['step']} to {out}")


if __name__ == "__main__":
    main()
