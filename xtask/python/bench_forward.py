#!/usr/bin/env python3
"""The PyTorch side of `cargo xtask bench-model`: forward and forward+backward time per batch
for a Hugging Face encoder with transformers (eager PyTorch, SDPA attention), mean pooling.
Prints one JSON line. Usage: bench_forward.py DIR [BATCH] [SEQ] [ITERS] [THREADS]"""
import json
import resource
import sys
import time

import torch
from transformers import AutoModel


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def main():
    a = sys.argv[1:]
    d = a[0]
    b, l, iters, threads = [int(x) for x in (a[1:] + ["32", "64", "20", "0"][len(a) - 1:])][:4]
    if threads > 0:
        torch.set_num_threads(threads)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModel.from_pretrained(d).to(dev)
    torch.manual_seed(0)
    ids = torch.randint(1000, 30000, (b, l), device=dev)
    mask = torch.ones(b, l, dtype=torch.int64, device=dev)

    def pool(h):
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    model.eval()
    fwd = []
    for i in range(iters + 3):
        t = time.perf_counter()
        with torch.no_grad():
            out = pool(model(input_ids=ids, attention_mask=mask).last_hidden_state)
        out.sum().item()
        sync()
        if i >= 3:
            fwd.append((time.perf_counter() - t) * 1e3)
    model.train()
    fb = []
    for i in range(iters + 3):
        t = time.perf_counter()
        out = pool(model(input_ids=ids, attention_mask=mask).last_hidden_state)
        loss = out.pow(2).mean()
        loss.backward()
        sync()
        model.zero_grad(set_to_none=False)
        if i >= 3:
            fb.append((time.perf_counter() - t) * 1e3)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"impl": "pytorch+transformers", "device": dev, "threads": torch.get_num_threads(), "batch": b, "seq": l,
                      "forward_ms": round(median(fwd), 2), "forward_backward_ms": round(median(fb), 2), "peak_rss_mib": round(rss)}))


if __name__ == "__main__":
    main()
