#!/usr/bin/env python3
"""The PyTorch peer of `cargo xtask bench-peer`: fine-tunes a Hugging Face encoder for score
regression with the hyperparameters fintune uses by default, the way a plain transformers
script would, and prints one JSON line (samples/s inside training steps, peak RSS, validation
MSE after the last epoch).

Same recipe as `fintune train --strata none`: mean pooling, dropout 0.1, a linear head bounded
by tanh, MSE; AdamW (backbone lr 5e-5, head lr 1e-3, weight decay 0.01 except biases and
LayerNorm weights), linear warm-up over 6% of the steps then linear decay, gradient clipping
at 1.0, batch 16, max length 128. Batches are shuffled and padded to their longest text;
with --bucket they are length-bucketed as fintune does (pools of 50 batches sorted by length).

Usage: peer_finetune.py MODEL_DIR TRAIN.jsonl VAL.jsonl [--epochs N] [--threads T] [--bucket]
                        [--device cpu|cuda]

On a GPU (`--device cuda`) each timed step ends with the loss read back (a synchronisation),
and peak_gpu_mib is PyTorch's peak allocated memory.
"""
import argparse
import json
import math
import random
import resource
import time

import torch
from transformers import AutoModel, AutoTokenizer


def read(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    return [r["text"] for r in rows], [float(r["score"]) for r in rows]


class Regressor(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.backbone = AutoModel.from_pretrained(d)
        self.drop = torch.nn.Dropout(0.1)
        self.out = torch.nn.Linear(self.backbone.config.hidden_size, 1)

    def forward(self, enc):
        h = self.backbone(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.tanh(self.out(self.drop(pooled)).squeeze(-1))


def batches(n, lengths, bs, epoch, seed, bucket):
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(n))
    rng.shuffle(order)
    if not bucket:
        return [order[i:i + bs] for i in range(0, n, bs)]
    out = []
    for p in range(0, n, bs * 50):
        pool = sorted(order[p:p + bs * 50], key=lambda i: lengths[i])
        out += [pool[i:i + bs] for i in range(0, len(pool), bs)]
    rng.shuffle(out)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("train")
    ap.add_argument("val")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--bucket", action="store_true")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    tok = AutoTokenizer.from_pretrained(a.model)
    xt, yt = read(a.train)
    xv, yv = read(a.val)
    # Tokenized once before training, as fintune does (and datasets.map would).
    enc_t = [tok(t, truncation=True, max_length=128) for t in xt]
    lengths = [len(e["input_ids"]) for e in enc_t]
    dev = torch.device(a.device)
    model = Regressor(a.model).to(dev)
    no_decay = lambda n: n.endswith("bias") or "LayerNorm" in n
    groups = [
        {"params": [p for n, p in model.backbone.named_parameters() if not no_decay(n)], "lr": 5e-5, "weight_decay": 0.01},
        {"params": [p for n, p in model.backbone.named_parameters() if no_decay(n)], "lr": 5e-5, "weight_decay": 0.0},
        {"params": [model.out.weight], "lr": 1e-3, "weight_decay": 0.01},
        {"params": [model.out.bias], "lr": 1e-3, "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8)
    steps_per_epoch = math.ceil(len(xt) / a.batch_size)
    total = steps_per_epoch * a.epochs
    warm = math.ceil(0.06 * total)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    train_s, samples, val_mse = 0.0, 0, None
    for epoch in range(a.epochs):
        model.train()
        for idx in batches(len(xt), lengths, a.batch_size, epoch, a.seed, a.bucket):
            enc = tok.pad([enc_t[i] for i in idx], return_tensors="pt").to(dev)
            y = torch.tensor([yt[i] for i in idx], device=dev)
            t0 = time.perf_counter()
            loss = torch.nn.functional.mse_loss(model(enc), y)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            loss.item()
            train_s += time.perf_counter() - t0
            samples += len(idx)
        model.eval()
        preds = []
        with torch.no_grad():
            for i in range(0, len(xv), 64):
                enc = tok(xv[i:i + 64], padding=True, truncation=True, max_length=128, return_tensors="pt").to(dev)
                preds += model(enc).tolist()
        val_mse = sum((p - y) ** 2 for p, y in zip(preds, yv)) / len(yv)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    gpu = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    print(json.dumps({"impl": "pytorch+transformers" + (" (bucketed)" if a.bucket else ""), "threads": torch.get_num_threads(),
                      "samples_per_s": round(samples / train_s, 2), "train_s": round(train_s, 2),
                      "peak_rss_mib": round(rss), "peak_gpu_mib": gpu and round(gpu), "device": str(dev), "val_mse": round(val_mse, 5)}))


if __name__ == "__main__":
    main()
