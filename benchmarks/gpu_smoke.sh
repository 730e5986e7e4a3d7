#!/usr/bin/env bash
# GPU smoke run on one CUDA device (about 5 minutes on an H200): the evaluation and training paths on a GPU.
#
#   benchmarks/gpu_smoke.sh MODEL_FOLDER [OUT_DIR]
#
# MODEL_FOLDER: a model folder with config.json and the tokenizer (weights not needed: the perplexity benchmark runs
# with seeded random weights: SmolLM2's own layer sizes in float32 and bfloat16, LLaMA2-7B's in bfloat16). It needs the
# Shakespeare corpus in $ROPELAB_CACHE (ropelab.data downloads it once on a machine with network access).
# Steps (each runs even when an earlier one failed; the summary lists their exit codes):
#   1. perplexity, ropelab vs the guide's loop, on CUDA: values, seconds, per-window speed-up, peak CUDA memory;
#   2. `ropelab pretrain` of the quick tiny LLaMA on the GPU, then an accelerate bf16 fine-tune (configs/accelerate/gpu.yaml);
#   3. FSDP (configs/accelerate/fsdp.yaml) with one process: 8 steps, then --resume to 12 steps.
set -uo pipefail
MODEL=${1:?usage: benchmarks/gpu_smoke.sh MODEL_FOLDER [OUT_DIR]}
OUT=${2:-outputs/gpu-smoke}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
declare -a SUMMARY

step() {  # step NAME COMMAND...: run, time, record the exit code
    local name=$1; shift
    echo "=== $name: $*"
    local start=$SECONDS
    "$@"
    local rc=$?
    SUMMARY+=("$name rc=$rc $((SECONDS - start))s")
}

$PY -c "import torch, transformers, accelerate; print('torch', torch.__version__, 'transformers', transformers.__version__,
'accelerate', accelerate.__version__, torch.cuda.get_device_name())"
step ppl-smollm2-fp32 $PY benchmarks/bench_perplexity.py --device cuda --dtype float32 --model "$MODEL" \
    --random-weights --windows 8 --memory-length 32768 --out "$OUT/ppl-smollm2-fp32.json"
step ppl-smollm2-bf16 $PY benchmarks/bench_perplexity.py --device cuda --dtype bfloat16 --model "$MODEL" \
    --random-weights --windows 8 --memory-length 32768 --out "$OUT/ppl-smollm2-bf16.json"
step ppl-llama2-7b-bf16 $PY benchmarks/bench_perplexity.py --device cuda --dtype bfloat16 --model "$MODEL" \
    --random-weights llama2-7b --windows 8 --memory-length 16384 --out "$OUT/ppl-llama2-7b-bf16.json"
step pretrain-tiny $PY -m ropelab.cli pretrain --config pretrain-quick --report
step train-bf16 accelerate launch --config_file configs/accelerate/gpu.yaml -m ropelab.train \
    --config configs/train/tiny-quick-2x.yaml --method dprope --set mixed_precision=bf16 --output-dir "$OUT/train-bf16"
TRAIN=(-m ropelab.train --config configs/train/tiny-quick-2x.yaml --method yarn --set mixed_precision=bf16
       --set checkpoint_every=4 --output-dir "$OUT/train-fsdp")
step fsdp-8-steps accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 1 "${TRAIN[@]}" --set steps=8
step fsdp-resume-12 accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 1 "${TRAIN[@]}" \
    --set steps=12 --resume
echo "=== summary"
printf '%s\n' "${SUMMARY[@]}" | tee "$OUT/summary.txt"
