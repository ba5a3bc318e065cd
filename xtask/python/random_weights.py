#!/usr/bin/env python3
"""Random weights with the exact layout of a real checkpoint, for machines that cannot hold the
real ones (the lent GPU machine receives at most 64 MiB; MPNet's weights are 438 MB).

Throughput and memory do not depend on the values, and a CPU/GPU agreement check only needs the
same weights on both devices, so `cargo xtask gpu-check`'s device script trains on these.

Usage:
  random_weights.py header SRC/model.safetensors OUT.json   # here: the tensor layout (names,
                                                            # dtypes, shapes), a few KiB
  random_weights.py fill LAYOUT.json OUT/model.safetensors  # there: random tensors, same layout
  random_weights.py llama CONFIG.json OUT/model.safetensors # there: a Llama layout from config

Values (seeded, so every machine draws the same): matrices and embeddings N(0, 0.02); LayerNorm
and RMSNorm weights 1; biases 0; integer tensors (position ids) 0, 1, 2, ... along the last axis.
"""
import json
import struct
import sys


def header(src, out):
    with open(src, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        meta = json.loads(f.read(n))
    layout = {k: {"dtype": v["dtype"], "shape": v["shape"]} for k, v in meta.items() if k != "__metadata__"}
    with open(out, "w") as f:
        json.dump(layout, f, indent=0, sort_keys=True)


def llama_layout(cfg):
    h, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    heads, kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    d = cfg.get("head_dim", h // heads)
    t = lambda *s: {"dtype": "F32", "shape": list(s)}
    out = {"embed_tokens.weight": t(v, h), "norm.weight": t(h)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"layers.{i}."
        out.update({
            p + "input_layernorm.weight": t(h),
            p + "post_attention_layernorm.weight": t(h),
            p + "self_attn.q_proj.weight": t(heads * d, h),
            p + "self_attn.k_proj.weight": t(kv * d, h),
            p + "self_attn.v_proj.weight": t(kv * d, h),
            p + "self_attn.o_proj.weight": t(h, heads * d),
            p + "mlp.gate_proj.weight": t(f, h),
            p + "mlp.up_proj.weight": t(f, h),
            p + "mlp.down_proj.weight": t(h, f),
        })
    if not cfg.get("tie_word_embeddings", True):
        out["lm_head.weight"] = t(v, h)
    return out


def fill(layout, out):
    import torch
    from safetensors.torch import save_file

    kinds = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}
    g = torch.Generator().manual_seed(0)
    tensors = {}
    for name in sorted(layout):
        spec = layout[name]
        shape, kind = spec["shape"], kinds[spec["dtype"]]
        if not kind.is_floating_point:
            last = shape[-1] if shape else 1
            t = torch.arange(last, dtype=kind).expand(*shape).contiguous() if shape else torch.zeros((), dtype=kind)
        elif name.endswith("bias"):
            t = torch.zeros(shape, dtype=kind)
        elif len(shape) == 1 and ("norm" in name.lower()):
            t = torch.ones(shape, dtype=kind)
        else:
            t = (torch.randn(shape, generator=g) * 0.02).to(kind)
        tensors[name] = t
    save_file(tensors, out)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("header", "fill", "llama"):
        sys.exit(__doc__)
    mode, a, b = sys.argv[1:]
    if mode == "header":
        header(a, b)
    elif mode == "fill":
        fill(json.load(open(a)), b)
    else:
        fill(llama_layout(json.load(open(a))), b)


if __name__ == "__main__":
    main()
