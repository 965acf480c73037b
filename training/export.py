"""Export a checkpoint's EMA weights to the diffusers ONNX layout in models/imagine-shapes/.

  /usr/bin/python3 training/export.py --ckpt training/checkpoints/main/last.pt --out models/imagine-shapes

Writes model_index.json, text_encoder/model.onnx, unet/model.onnx (+ config.json), tokenizer/ (a word-level
tokenizer.json that @huggingface/transformers' AutoTokenizer loads), scheduler/scheduler_config.json and
training.json (the run's config and eval history, for the model card). No vae_decoder/: pixel space.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from train import MAX_LEN, build  # noqa: E402

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
    size = 32
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
        x = torch.randn(2, 3, size, size)
        t = torch.tensor([999, 1], dtype=torch.int64)
        torch.onnx.export(
            model.unet, (x, t, ctx), os.path.join(out, "unet", "model.onnx"),
            input_names=["sample", "timestep", "encoder_hidden_states"], output_names=["out_sample"],
            dynamic_axes={"sample": {0: "batch"}, "timestep": {0: "batch"},
                          "encoder_hidden_states": {0: "batch", 1: "sequence"}, "out_sample": {0: "batch"}},
            opset_version=args.opset, do_constant_folding=True,
        )
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
        "in_channels": 3,
        "out_channels": 3,
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
    })
    print(f"exported step {ck['step']} to {out}")


if __name__ == "__main__":
    main()
