#!/usr/bin/env bash
# Builds the GPU check's binaries here, for a GPU machine that has PyTorch but cannot build or
# download anything (the lent H200: torch 2.11.0+cu130, no cargo, no registry), and packs what
# the device script needs into .gpu/ (at most 64 MiB travel to that machine).
#
# fintune links libtorch 2.13 (tch 0.26). The GPU machine has 2.11, and libtorch_cuda is over
# 1 GB, so the binaries are built against the machine's version instead: PyPI's torch wheel of
# that version (the same build) provides headers and libraries; tch's generated C API lists a
# few operations 2.11 lacks, and a copy of torch-sys outside the repository has those bodies
# replaced by an error (fintune calls none of them). Nothing of this is committed or used by
# the normal build. See docs/gpu/README.md.
#
# Usage: xtask/gpu/prepare.sh [TORCH_VERSION]   (default 2.11.0; run from the repository root)
set -euo pipefail
V=${1:-2.11.0}
ROOT=$(pwd); G=$ROOT/target/gpu; mkdir -p "$G"
PY=${PYTHON:-python3}
echo "prepare: libtorch $V from PyPI into $G/torch-$V"
if [ ! -f "$G/torch-$V/torch/lib/libtorch_cuda.so" ]; then
  mkdir -p "$G/torch-$V"
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 "torch==$V" -d "$G/wheels"
  (cd "$G/torch-$V" && unzip -q -o "$G"/wheels/torch-"$V"-*.whl 'torch/lib/*' 'torch/include/*' 'torch/version.py')
fi
# nvcc 13.0 and the CUDA headers (ATen/cuda includes cuBLAS, cuSPARSE, cuSOLVER...) and NCCL's
# beside libtorch, where the build scripts look (../../nvidia).
if [ ! -x "$G/torch-$V/nvidia/cu13/bin/nvcc" ]; then
  NCCL=$(unzip -p "$G"/wheels/torch-"$V"-*.whl '*/METADATA' | sed -n 's/^Requires-Dist: \(nvidia-nccl-cu13==[^;]*\).*/\1/p')
  $PY -m pip install -q --target "$G/nv" "cuda-toolkit[nvcc,cudart,cccl,cusparse,cublas,cusolver,curand,cufft]==13.0.3" "$NCCL"
  ln -sfn "$G/nv/nvidia" "$G/torch-$V/nvidia"
fi
# torch-sys with the operations this libtorch lacks stubbed out.
SRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/torch-sys-0.26.0 | head -1)
TS=$G/torch-sys-for-$V
if [ ! -f "$TS/.stubbed" ]; then
  rm -rf "$TS"; cp -r "$SRC" "$TS"; rm -f "$TS/.cargo_vcs_info.json"
  echo "prepare: finding the operations libtorch $V lacks (a syntax check of tch's C API, 1-2 min)"
  g++ -std=c++17 -fsyntax-only -w -D_GLIBCXX_USE_CXX11_ABI=1 -I "$G/torch-$V/torch/include" \
    -I "$G/torch-$V/torch/include/torch/csrc/api/include" "$TS/libtch/torch_api_generated.cpp" \
    2> "$G/syntax.log" || true
  $PY - "$TS/libtch/torch_api_generated.cpp" "$G/syntax.log" "$V" <<'EOF'
import re, sys
path, log, v = sys.argv[1:]
bad = sorted({int(m.group(1)) for m in re.finditer(r"torch_api_generated\.cpp:(\d+):\d+: error", open(log).read())})
lines = open(path).read().split("\n")
for ln in bad:
    i = ln - 1
    j = i
    while lines[j].strip() != ")":
        j += 1
    for k in range(i, j):
        lines[k] = "    //"
    lines[i] = f'    throw std::runtime_error("this operation is not in libtorch {v} (fintune\'s GPU-check build)");'
open(path, "w").write("\n".join(lines))
print(f"prepare: {len(bad)} call(s) of tch's C API stubbed (not in libtorch {v})")
EOF
  touch "$TS/.stubbed"
fi
export LIBTORCH=$G/torch-$V/torch LIBTORCH_BYPASS_VERSION_CHECK=1 CARGO_TARGET_DIR=$G/target
export GLOO_INCLUDE=${GLOO_INCLUDE:-$ROOT/.fintune/gloo/usr/include}
# The libraries libtorch_cuda needs (cuBLAS, cuDNN...) live on the GPU machine only.
export RUSTFLAGS="-C link-arg=-Wl,--allow-shlib-undefined"
P=(--config "patch.crates-io.torch-sys.path=\"$TS\"" --release --features cuda)
echo "prepare: release build with --features cuda (cold: 15-25 min on 2 cores)"
cargo build "${P[@]}" -p fintune-train --bin fintune --example bench_step
cargo build "${P[@]}" -p fintune-model --example bench_kernels
cargo test "${P[@]}" -p fintune-model --lib --no-run
cargo test "${P[@]}" -p fintune-dist --test nccl --no-run
# Cargo prints test binaries' paths; take the newest of each.
newest() { ls -t "$G"/target/release/deps/"$1"-* | grep -v '\.d$' | head -1; }
C=$ROOT/.gpu; rm -rf "$C"; mkdir -p "$C/bin" "$C/models" "$C/data"
pack() { strip -o "$C/bin/$2" "$1" && xz -T2 -6 "$C/bin/$2"; }
pack "$G/target/release/fintune" fintune
pack "$G/target/release/examples/bench_step" bench_step
pack "$G/target/release/examples/bench_kernels" bench_kernels
pack "$(newest fintune_model)" model_lib_tests
pack "$(newest nccl)" dist_nccl_test
for m in minilm:all-MiniLM-L6-v2 mpnet:all-mpnet-base-v2; do
  d=.fintune/models/${m#*:}; o=$C/models/${m%%:*}; mkdir -p "$o"
  cp "$d"/{config.json,tokenizer.json,modules.json} "$o/"
  $PY xtask/python/random_weights.py header "$d/model.safetensors" "$o/layout.json"
done
mkdir -p "$C/models/smollm2"; cp xtask/gpu/smollm2-config.json "$C/models/smollm2/config.json"
S=../shared/data
cp $S/fiqa2018_task1/train.jsonl "$C/data/fiqa_train.jsonl"
cp $S/semeval2017_task5/headlines_train.jsonl "$C/data/headlines_train.jsonl"
cp $S/semeval2017_task5/microblogs_train.jsonl "$C/data/microblogs_train.jsonl"
grep -qx '/.gpu/' .git/info/exclude || echo '/.gpu/' >> .git/info/exclude
du -sh "$C"; ls -la "$C/bin"
echo "prepare: done; on the GPU machine: bash xtask/gpu/device-check.sh .gpu \$OUT (carry .gpu)"
