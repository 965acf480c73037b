"""Warm start from an exported model folder: read the ONNX initializers back into a PyTorch model by name.

torch.onnx keeps a parameter's name when it feeds a node unchanged; where export transformed it (Linear weights
on 3-D inputs become transposed MatMul constants, GroupNorm's affine parameters [C, 1, 1] Mul/Add constants) the
name is lost, but the consuming node's scope ("/down_attn.1/self_attn/q/MatMul") still says which module it
belongs to. Parameters that are absent or differ in shape (a new input layer, new words) keep their fresh values.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np
import onnx
import torch
from onnx import numpy_helper


def _module_path(node_name: str) -> tuple[str, int]:
    """'/down_attn.1/mlp/mlp.0/MatMul' -> ('down_attn.1.mlp.0', 0); '/attn/q_1/MatMul' -> ('attn.q', 1)."""
    parts = [p for p in node_name.split("/") if p][:-1]
    block = 0
    out: list[str] = []
    for p in parts:
        m = re.fullmatch(r"(.*?)_(\d+)", p)
        if m and not p.startswith("onnx"):
            p, block = m.group(1), max(block, int(m.group(2)))
        if out and p.startswith(out[-1] + "."):
            out[-1] = p
        else:
            out.append(p)
    return ".".join(out), block


def onnx_params(path: str, blocks_prefix: str | None = None) -> dict[str, np.ndarray]:
    """Parameter name -> value for one exported graph. blocks_prefix names the ModuleDict list ('blocks') whose
    scopes torch flattens to 'attn', 'attn_1', ... (the text encoder)."""
    m = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    out = {k: v for k, v in inits.items() if not k.startswith("onnx::")}
    for node in m.graph.node:
        for inp in node.input:
            if not inp.startswith("onnx::") or inp not in inits:
                continue
            path_, block = _module_path(node.name)
            if blocks_prefix and path_.split(".")[0] in ("attn", "mlp", "ln1", "ln2"):
                path_ = f"{blocks_prefix}.{block}.{path_}"
            v = inits[inp]
            if node.op_type == "MatMul":
                out[path_ + ".weight"] = v.T
            elif node.op_type == "Mul":
                out[path_ + ".weight"] = v.reshape(-1)
            elif node.op_type == "Add":
                out[path_ + ".bias"] = v.reshape(-1)
    return out


def warm_start(model: torch.nn.Module, folder: str, vocab: list[str]) -> dict:
    """Copy the exported weights in `folder` into model.text / model.unet where names and shapes agree; word
    embeddings are matched by word. Returns what was copied and what was left fresh."""
    copied, fresh = [], []
    with open(os.path.join(folder, "tokenizer", "tokenizer.json")) as f:
        old_vocab: dict[str, int] = json.load(f)["model"]["vocab"]
    for part, module, prefix in (("text_encoder", model.text, "blocks"), ("unet", model.unet, None)):
        params = onnx_params(os.path.join(folder, part, "model.onnx"), prefix)
        sd = module.state_dict()
        for name, t in sd.items():
            v = params.get(name)
            if part == "text_encoder" and name == "tok.weight" and v is not None:
                new = t.clone()
                hits = [(i, old_vocab[w]) for i, w in enumerate(vocab) if w in old_vocab]
                for i, j in hits:
                    new[i] = torch.from_numpy(v[j].copy())
                sd[name] = new
                copied.append(f"{part}.{name} ({len(hits)}/{len(vocab)} words)")
            elif v is not None and tuple(v.shape) == tuple(t.shape):
                sd[name] = torch.from_numpy(np.ascontiguousarray(v)).to(t.dtype)
                copied.append(f"{part}.{name}")
            else:
                fresh.append(f"{part}.{name}")
        module.load_state_dict(sd)
    return {"copied": copied, "fresh": fresh}
