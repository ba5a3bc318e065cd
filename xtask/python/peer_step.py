#!/usr/bin/env python3
"""The PyTorch peer of fintune's `bench_step` example: seconds per training step of a Hugging
Face backbone with fintune's two heads, the way a plain PyTorch eager + transformers script
writes it. Prints one JSON line. Part of `cargo xtask gpu-check`'s device script.

Same step as bench_step: random token ids in [100, 30000) of shape [BATCH, SEQ] with a full
attention mask, mean pooling (last-token pooling for decoders), dropout 0.1, a tanh-bounded
regression head and a 5-class head, MSE + cross-entropy, backward, gradient clipping at 1.0,
AdamW (lr 1e-4, weight decay 0.01). `lora:R` freezes the backbone and adds peft LoRA adapters
(rank R, alpha 2R, dropout 0.05) on fintune's default targets (the attention projections).
`--bf16` runs the forward and backward under autocast to bfloat16 (float32 master weights, as
fintune's `--precision bf16`). Steps are timed after one warm-up step; the median is reported.

Usage: peer_step.py DIR TUNING [BATCH] [SEQ] [STEPS] [--device cuda|cpu] [--bf16]
"""
import argparse
import json
import statistics
import time

import torch
from transformers import AutoConfig, AutoModel

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "query", "key", "value",
                "attention.output.dense", "attn.q", "attn.k", "attn.v", "attn.o"]


class Model(torch.nn.Module):
    def __init__(self, d, tuning):
        super().__init__()
        cfg = AutoConfig.from_pretrained(d)
        self.last = cfg.model_type in ("llama", "qwen2")
        self.backbone = AutoModel.from_pretrained(d, dtype=torch.float32)
        if tuning.startswith("lora:"):
            from peft import LoraConfig, get_peft_model

            r = int(tuning.split(":")[1])
            names = {n.split(".")[-1] for n, _ in self.backbone.named_modules()}
            dotted = [t for t in LORA_TARGETS if "." in t]
            targets = [t for t in LORA_TARGETS if t in names and "." not in t]
            targets += [t for t in dotted
                        if any(n.endswith("." + t) for n, _ in self.backbone.named_modules())]
            self.backbone = get_peft_model(
                self.backbone, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.05,
                                          target_modules=targets))
        h = cfg.hidden_size
        self.drop = torch.nn.Dropout(0.1)
        self.reg = torch.nn.Linear(h, 1)
        self.cls = torch.nn.Linear(h, 5)

    def forward(self, ids, mask):
        x = self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        if self.last:
            pooled = x[:, -1]
        else:
            m = mask.unsqueeze(-1).to(x.dtype)
            pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        pooled = self.drop(pooled.float())
        return torch.tanh(self.reg(pooled).squeeze(-1)), self.cls(pooled)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("tuning", nargs="?", default="full")
    ap.add_argument("batch", nargs="?", type=int, default=16)
    ap.add_argument("seq", nargs="?", type=int, default=64)
    ap.add_argument("steps", nargs="?", type=int, default=5)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--phases", action="store_true",
                    help="synchronise after each phase and print their medians too")
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = Model(a.dir, a.tuning).to(dev).train()
    load_s = time.perf_counter() - t0
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    ids = torch.randint(100, 30000, (a.batch, a.seq), device=dev)
    mask = torch.ones_like(ids)
    y = torch.rand(a.batch, device=dev) * 2 - 1
    c = torch.randint(0, 5, (a.batch,), device=dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    phases = [[], [], [], []]
    for s in range(a.steps + 1):
        t = time.perf_counter()
        since = [t]

        def mark(i):
            if a.phases and dev.type == "cuda":
                torch.cuda.synchronize(dev)
                now = time.perf_counter()
                if s > 0:
                    phases[i].append((now - since[0]) * 1e3)
                since[0] = now

        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
            score, logits = model(ids, mask)
        loss = torch.nn.functional.mse_loss(score.float(), y) + torch.nn.functional.cross_entropy(
            logits.float(), c)
        mark(0)
        loss.backward()
        mark(1)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        mark(2)
        opt.step()
        mark(3)
        loss.item()
        if s > 0:
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    if phases[0]:
        names = ["forward", "backward", "clip", "optimizer"]
        print(json.dumps({"phases_ms": {n: round(statistics.median(v), 3) for n, v in zip(names, phases)}}))
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else float("nan")
    print(json.dumps({
        "peer": "pytorch", "backbone": a.dir, "tuning": a.tuning, "device": str(dev),
        "bf16": a.bf16, "batch": a.batch, "seq": a.seq,
        "trainable_params": sum(p.numel() for p in params), "load_s": round(load_s, 2),
        "seconds_per_step": round(med, 4), "samples_per_s": round(a.batch / med, 1),
        "peak_allocated_mib": None if peak != peak else round(peak),
    }))


if __name__ == "__main__":
    main()
