#!/usr/bin/env bash
# The GPU check in one go, on a GPU machine that cannot build or download anything: it runs
# binaries built elsewhere by `xtask/gpu/prepare.sh` (against the machine's own libtorch) from
# the folder CARRY, on random weights with the real checkpoints' layouts (throughput, memory
# and CPU/GPU agreement do not depend on the values). See docs/gpu/README.md.
#
# Usage: [SECTIONS="1 2 3 4 5 6"] [STEP_ROWS=...] [PHASE_ROWS=...] xtask/gpu/device-check.sh CARRY OUT
#   CARRY: bin/*.xz, models/{minilm,mpnet}/ (config, tokenizer, layout.json),
#          models/smollm2/config.json, data/*.jsonl
#   OUT:   report.md (the measurements), log.txt, steps.json (one line per step benchmark),
#          metrics.tar.gz (the training runs), tests-model.txt (the tests' whole output)
#   Sections: 1 GPU tests, 2 GPU/CPU agreement of a training run, 3 training steps against
#   PyTorch, 4 fused kernels against libtorch, 5 an MPNet epoch on pooled data, 6 phases.
# Needs: python3 with torch, transformers, safetensors and peft (the peer), nvidia-smi.
set -uo pipefail
CARRY=$(realpath "$1"); OUT=$(realpath "$2"); ROOT=$(realpath "$(dirname "$0")/../..")
mkdir -p "$OUT"; exec > >(tee -a "$OUT/log.txt") 2>&1
W=/tmp/fintune-gpu; rm -rf "$W"; mkdir -p "$W/bin" "$W/models"
T0=$(date +%s)
say() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
REPORT="$OUT/report.md"
rep() { printf '%s\n' "$*" >> "$REPORT"; }

TORCH=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')
NV=$(dirname "$TORCH")/nvidia
export LD_LIBRARY_PATH="$TORCH/lib:$NV/cu13/lib:$NV/nccl/lib:$NV/cudnn/lib:${LD_LIBRARY_PATH:-}"
nvidia-smi
rep "# fintune GPU check"
rep ""
rep "$(date -u +%Y-%m-%d) on $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader), $(nproc) CPU cores; libtorch $(python3 -c 'import torch; print(torch.__version__)') (the machine's), transformers $(python3 -c 'import transformers; print(transformers.__version__)')."
rep ""

for f in "$CARRY"/bin/*.xz; do python3 -c 'import lzma, sys; open(sys.argv[2], "wb").write(lzma.open(sys.argv[1]).read())' "$f" "$W/bin/$(basename "$f" .xz)"; done
chmod +x "$W"/bin/*
say "binaries: $(ls "$W/bin" | tr '\n' ' ')"
RW="python3 $ROOT/xtask/python/random_weights.py"
for m in minilm mpnet; do
  cp -r "$CARRY/models/$m" "$W/models/$m"
  $RW fill "$W/models/$m/layout.json" "$W/models/$m/model.safetensors"
done
mkdir -p "$W/models/smollm2"; cp "$CARRY/models/smollm2/config.json" "$W/models/smollm2/"
$RW llama "$W/models/smollm2/config.json" "$W/models/smollm2/model.safetensors"
# MiniLM without dropout, for the CPU/GPU agreement run (dropout masks are per device).
mkdir -p "$W/models/minilm-nodrop"
for f in "$W"/models/minilm/*; do ln -s "$f" "$W/models/minilm-nodrop/"; done
rm "$W/models/minilm-nodrop/config.json"
python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c["hidden_dropout_prob"] = c["attention_probs_dropout_prob"] = 0.0; json.dump(c, open(sys.argv[2], "w"))' "$W/models/minilm/config.json" "$W/models/minilm-nodrop/config.json"
say "random weights written"

# GPU memory in use, sampled every 50 ms while a command runs: the peak minus the idle level
# (CUDA context included, for fintune and PyTorch alike).
peak() {
  local base; base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 > "$W/mem" 2>/dev/null &
  local pid=$!
  "$@"; local rc=$?
  kill $pid 2>/dev/null; wait $pid 2>/dev/null
  local top; top=$(grep -E '^[0-9]+$' "$W/mem" | sort -n | tail -1)
  PEAK=$(( ${top:-0} - ${base:-0} ))
  return $rc
}

cfg() { # name backbone device precision epochs data...
  local name=$1 bb=$2 dev=$3 prec=$4 ep=$5; shift 5
  local files; files=$(printf '"%s", ' "$@")
  cat > "$W/$name.toml" <<EOF
name = "$name"
[data]
train = [${files%, }]
test = "$ROOT/fixtures/test.jsonl"
[model]
backbone = "$bb"
[model.heads]
dropout = 0.0
[optim]
epochs = $ep
batch_size = 16
device = "$dev"
precision = "$prec"
seed = 7
EOF
}
train() { # name -> metrics.json in $W/runs/name
  timeout 300 "$W/bin/fintune" train --config "$W/$1.toml" --out "$W/runs/$1" --quiet > "$W/$1.out" 2>&1
  local rc=$?; [ $rc -eq 0 ] || { echo "train $1 failed ($rc)"; tail -20 "$W/$1.out"; }
  return $rc
}
# SECTIONS="1 2 ..." runs only those sections (default: all).
want() { [[ " ${SECTIONS:-1 2 3 4 5 6} " == *" $1 "* ]]; }

if want 1; then
rep "## 1. Tests on the GPU"
rep ""
rep '```'
say "kernel tests"
timeout 120 "$W/bin/model_lib_tests" --include-ignored --nocapture kernels 2>&1 | tee "$W/t1" | grep -E "CUDA kernels|test result|panicked|FAILED" >> "$REPORT"
say "NCCL test"
timeout 120 "$W/bin/dist_nccl_test" --include-ignored --nocapture 2>&1 | tee "$W/t2" | grep -E "NCCL group|test result|panicked|FAILED|Error" >> "$REPORT"
rep '```'
rep ""
fi

if want 2; then
rep "## 2. Training on the GPU against the CPU (MiniLM layout, random weights, dropout off)"
rep ""
ND="$W/models/minilm-nodrop"
cfg agree-cpu "$ND" cpu f32 2 "$ROOT/fixtures/train.jsonl"
cfg agree-cuda "$ND" cuda f32 2 "$ROOT/fixtures/train.jsonl"
cfg agree-auto "$ND" auto f32 2 "$ROOT/fixtures/train.jsonl"
cfg agree-bf16 "$ND" cuda bf16 2 "$ROOT/fixtures/train.jsonl"
say "CPU/GPU agreement runs"
train agree-cpu; peak train agree-cuda; P1=$PEAK; peak train agree-auto; P3=$PEAK; peak train agree-bf16; P2=$PEAK
python3 - "$W/runs" "$P1" "$P3" "$P2" >> "$REPORT" <<'EOF'
import json, sys, os
runs, *peaks = sys.argv[1:]
def m(n):
    try: return json.load(open(os.path.join(runs, n, "metrics.json")))
    except Exception as e: return {}
print("| run | best epoch | val MSE | test MSE | samples/s | GPU memory MiB (0: the CPU) |")
print("|---|---|---|---|---|---|")
for n, p in zip(["agree-cpu", "agree-cuda", "agree-auto", "agree-bf16"], ["0"] + peaks):
    d = m(n)
    print(f"| {n} | {d.get('best_epoch')} | {(d.get('val') or {}).get('mse')} | {(d.get('test') or {}).get('mse')} | {(d.get('timing') or {}).get('samples_per_s')} | {p} |")
t = lambda n: (m(n).get("test") or {}).get("mse")
a, b, c, bf = t("agree-cpu"), t("agree-cuda"), t("agree-auto"), t("agree-bf16")
if a and b:
    print(f"\nTest MSE, GPU against CPU (f32): relative difference {abs(a - b) / a:.2e}; --device auto against cuda: {abs((c or 0) - b) / b:.2e}; bf16 against f32 on the GPU: {(bf or float('nan')) / b - 1:+.2%}.")
    ha = [e["train_loss_reg"] for e in m("agree-cpu")["epochs"]]
    hb = [e["train_loss_reg"] for e in m("agree-cuda")["epochs"]]
    print(f"Per-epoch training loss, CPU {ha} against GPU {hb}.")
    for n in ["agree-cpu", "agree-cuda", "agree-auto", "agree-bf16"]:
        print(f"Seconds per epoch, {n}: {[round(e['seconds'], 2) for e in m(n).get('epochs', [])]}.")
EOF
rep ""
fi

if want 3; then
rep "## 3. Training steps: fintune against PyTorch eager + transformers (same GPU, same shapes)"
rep ""
rep "| backbone | tuning | batch x seq | precision | fintune samples/s | PyTorch samples/s | fintune / PyTorch | fintune GPU MiB | PyTorch GPU MiB (sampled / allocated) |"
rep "|---|---|---|---|---|---|---|---|---|"
step() { # model tuning batch seq precision
  local m=$1 tu=$2 b=$3 l=$4 pr=$5 fj pj
  say "step $m $tu $b x $l $pr"
  peak env FINTUNE_PRECISION=$pr timeout 240 "$W/bin/bench_step" "$W/models/$m" "$tu" "$b" "$l" 20 cuda > "$W/s.out" 2>&1
  local fp=$PEAK; fj=$(grep '^{' "$W/s.out" | tail -1); [ -n "$fj" ] || tail -5 "$W/s.out"
  local flag=""; [ "$pr" = bf16 ] && flag=--bf16
  peak timeout 240 python3 "$ROOT/xtask/python/peer_step.py" "$W/models/$m" "$tu" "$b" "$l" 20 --device cuda $flag > "$W/p.out" 2>&1
  local pp=$PEAK; pj=$(grep '^{' "$W/p.out" | tail -1); [ -n "$pj" ] || tail -5 "$W/p.out"
  echo "$fj" >> "$OUT/steps.json"; echo "$pj" >> "$OUT/steps.json"
  python3 - "$m" "$tu" "$b" "$l" "$pr" "$fj" "$pj" "$fp" "$pp" >> "$REPORT" <<'EOF'
import json, sys
m, tu, b, l, pr, fj, pj, fp, pp = sys.argv[1:]
f = json.loads(fj) if fj else {}; p = json.loads(pj) if pj else {}
fs, ps = f.get("samples_per_s"), p.get("samples_per_s")
r = f"{fs / ps:.2f}x" if fs and ps else "n/a"
print(f"| {m} | {tu} | {b} x {l} | {pr} | {fs} | {ps} | {r} | {fp} | {pp} / {p.get('peak_allocated_mib')} |")
EOF
}
# STEP_ROWS="mpnet/full/32/128/bf16 ..." measures only those rows (default: all eight).
for r in ${STEP_ROWS:-minilm/full/32/128/f32 minilm/full/32/128/bf16 mpnet/full/32/128/f32 mpnet/full/32/128/bf16 \
    smollm2/lora:8/16/64/f32 smollm2/lora:8/16/64/bf16 smollm2/full/16/64/f32 smollm2/full/16/64/bf16}; do
  IFS=/ read -r m tu b l pr <<< "$r"
  step "$m" "$tu" "$b" "$l" "$pr"
done
rep ""
fi

if want 4; then
rep "## 4. Fused kernels against the unfused libtorch sequence"
rep ""
rep '```'
say "kernel benchmarks"
timeout 120 "$W/bin/bench_kernels" "$W/models/minilm" "$W/models/smollm2" 2>&1 | grep '^{' >> "$REPORT"
rep '```'
rep ""
fi

if want 5; then
rep "## 5. One epoch of MPNet on the pooled SSIX training files (FiQA + headlines + microblogs)"
rep ""
POOL=("$CARRY/data/fiqa_train.jsonl" "$CARRY/data/headlines_train.jsonl" "$CARRY/data/microblogs_train.jsonl")
cat "${POOL[@]}" > "$W/pool.jsonl"
cfg pool-mpnet "$W/models/mpnet" cuda f32 1 "${POOL[@]}"
cfg pool-mpnet-bf16 "$W/models/mpnet" cuda bf16 1 "${POOL[@]}"
say "pooled MPNet epoch"
S=$(date +%s.%N); peak train pool-mpnet; P1=$PEAK; E1=$(python3 -c "import time; print(round(time.time() - $S, 1))")
S=$(date +%s.%N); peak train pool-mpnet-bf16; P2=$PEAK; E2=$(python3 -c "import time; print(round(time.time() - $S, 1))")
peak timeout 240 python3 "$ROOT/xtask/python/peer_finetune.py" "$W/models/mpnet" "$W/pool.jsonl" "$ROOT/fixtures/test.jsonl" --epochs 1 --bucket --device cuda > "$W/pp.out" 2>&1; P3=$PEAK
grep '^{' "$W/pp.out" | tail -1 >> "$OUT/steps.json"
python3 - "$W/runs" "$E1" "$E2" "$P1" "$P2" "$P3" "$(grep '^{' "$W/pp.out" | tail -1)" >> "$REPORT" <<'EOF'
import json, sys, os
runs, e1, e2, p1, p2, p3, pj = sys.argv[1:]
def sps(n):
    try: return json.load(open(os.path.join(runs, n, "metrics.json")))["timing"]["samples_per_s"]
    except Exception as e: return f"error: {e}"
p = json.loads(pj) if pj else {}
print("| run | samples/s in training steps | wall s (whole command) | GPU MiB |")
print("|---|---|---|---|")
print(f"| fintune f32 | {sps('pool-mpnet')} | {e1} | {p1} |")
print(f"| fintune bf16 | {sps('pool-mpnet-bf16')} | {e2} | {p2} |")
print(f"| PyTorch + transformers f32 (length-bucketed, batch 16) | {p.get('samples_per_s')} | {p.get('train_s')} (steps only) | {p3} / {p.get('peak_gpu_mib')} |")
EOF
rep ""
fi

if want 6; then
rep "## 6. Where a step's time goes (the device synchronised after each phase; medians, ms)"
rep ""
rep "| backbone | batch x seq | precision | implementation | forward + losses | backward | clipping | optimiser |"
rep "|---|---|---|---|---|---|---|---|"
# PHASE_ROWS="mpnet:bf16" measures only those rows.
for mp in ${PHASE_ROWS:-minilm:f32 mpnet:f32 mpnet:bf16}; do
  m=${mp%:*}; pr=${mp#*:}; flag=""; [ "$pr" = bf16 ] && flag=--bf16
  say "phases $m $pr"
  FINTUNE_PRECISION=$pr FINTUNE_BENCH_PHASES=1 timeout 240 "$W/bin/bench_step" "$W/models/$m" full 32 128 20 cuda > "$W/s.out" 2>&1
  timeout 240 python3 "$ROOT/xtask/python/peer_step.py" "$W/models/$m" full 32 128 20 --device cuda --phases $flag > "$W/p.out" 2>&1
  for f in s p; do
    j=$(grep '^{"phases_ms"' "$W/$f.out" | tail -1); [ -n "$j" ] || tail -5 "$W/$f.out"
    python3 -c 'import json, sys; p = json.loads(sys.argv[4] or "{}").get("phases_ms", {}); print(f"| {sys.argv[1]} | 32 x 128 | {sys.argv[2]} | {sys.argv[3]} | " + " | ".join(str(p.get(k)) for k in ["forward", "backward", "clip", "optimizer"]) + " |")' "$m" "$pr" "$([ $f = s ] && echo fintune || echo PyTorch)" "$j" >> "$REPORT"
  done
done
rep ""
fi

say "done"
cp "$W/t1" "$OUT/tests-model.txt" 2>/dev/null; cat "$W/t2" >> "$OUT/tests-model.txt" 2>/dev/null
# At most 8 files come back: the runs' metrics travel as one archive.
[ -d "$W/runs" ] && (cd "$W/runs" && tar czf "$OUT/metrics.tar.gz" */metrics.json */config.toml 2>/dev/null)
rep "Total $(( $(date +%s) - T0 )) s on the device."
cat "$REPORT"
