#!/usr/bin/env python3
"""Checks `fintune encode` against the Python reference (transformers, mean pooling).

    fintune encode --backbone DIR --input IN.jsonl --output OUT.jsonl
    .fintune/venv/bin/python xtask/python/encode_reference.py DIR IN.jsonl OUT.jsonl

Reads the texts of IN.jsonl, embeds them with transformers' AutoModel and sentence-
transformers' mean pooling (max length 128), and prints the largest absolute difference to the
embeddings fintune wrote to OUT.jsonl, matched by id. Exits 1 above 1e-4."""
import json
import sys

import torch
from transformers import AutoModel, AutoTokenizer


def main():
    model_dir, inp, out = sys.argv[1:4]
    rows = [json.loads(l) for l in open(inp) if l.strip()]
    ours = {r["id"]: r["embedding"] for r in (json.loads(l) for l in open(out) if l.strip())}
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    worst, n = 0.0, 0
    for i in range(0, len(rows), 32):
        chunk = rows[i:i + 32]
        enc = tok([r["text"] for r in chunk], padding=True, truncation=True, max_length=128, return_tensors="pt")
        with torch.no_grad():
            h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
        emb = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        for r, e in zip(chunk, emb):
            diff = (torch.tensor(ours[r["id"]]) - e).abs().max().item()
            worst = max(worst, diff)
            n += 1
    print(f"{n} texts, max abs difference {worst:.3e}")
    sys.exit(0 if worst < 1e-4 else 1)


if __name__ == "__main__":
    main()
