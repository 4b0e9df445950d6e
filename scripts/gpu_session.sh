#!/usr/bin/env bash
# The GPU measurements of issue #15 in one command of under 10 minutes, every step time-boxed:
#   1. env            the GPU, driver and package versions                      -> env.txt
#   2. speed          python -m benchmarks.speed --device cuda, eager: end to end through
#                     train.py's path, the bare step at batch 128/512/2048 (bf16 and float32),
#                     the DataLoader reference
#                                                                               -> speed_gpu.json
#   3. train_b128     train.py trainer=gpu, 10 epochs at batch 128 (the default U-Net VAE)
#   4. train_b512     train.py experiment=gpu_fast, 10 epochs (batch 512, lr 2e-3, data on device)
#                     -> elbo_10epochs.json: validation ELBO per epoch, test metrics, epoch times
#   5. eval           eval.py on both runs, device=cuda fid=false, timed
#                                                         -> eval_timing.json, eval_report.md
#   6. compile        python -m benchmarks.speed --device cuda with module.compile_mode
#                     reduce-overhead and default (end to end and the bare step at batch 512)
#                                                                      -> speed_gpu_compile.json
# plus session.log (this script's output) and logs.tar.gz (every step's full log): 8 files.
# A step that fails or runs out of time is logged and the next one runs; each step's limit is
# cut to what is left of SESSION_BUDGET (seconds, default 540), so the script ends in time.
# GPU_SESSION_SKIP=speed,compile (step names, comma-separated) leaves steps out, e.g. in a rerun.
#
# On the device machine (the run tool; carry [".gpu_carry"], built here by scripts/gpu_carry.sh):
#   bash scripts/gpu_session.sh
# It finds .gpu_carry/site (hydra, omegaconf, antlr4) and .gpu_carry/data (the 64 px dataset)
# itself; PYTHONPATH and FACEMASK_ROOT, when set, are kept. Results go to $OUT.
#
# Here, a check of the whole script on the CPU with every step shrunk (a handful of images):
#   CARRY_LIMIT=12 CARRY_DIR=/tmp/carry PYTHON=/work/venv/bin/python scripts/gpu_carry.sh
#   GPU_SESSION_DRY=1 CARRY_DIR=/tmp/carry PYTHON=/work/venv/bin/python OUT=/tmp/gpu_session \
#     nice -n 19 env OMP_NUM_THREADS=1 scripts/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
DRY=${GPU_SESSION_DRY:-0}
OUT=${OUT:-/tmp/gpu_session}
CARRY=${CARRY_DIR:-.gpu_carry}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-session-XXXXXX")
LOGS=$WORK/logs
mkdir -p "$OUT" "$LOGS"
[ -d "$CARRY/site" ] && export PYTHONPATH="$(cd "$CARRY/site" && pwd)${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${FACEMASK_ROOT:-}" ] && [ -d "$CARRY/data/Face Mask Dataset" ]; then
  export FACEMASK_ROOT
  FACEMASK_ROOT="$(cd "$CARRY/data/Face Mask Dataset" && pwd)"
fi
export FACEMASK_CACHE=$WORK/cache PYTHONUNBUFFERED=1
exec > >(tee -a "$OUT/session.log") 2>&1

if [ "$DRY" = 1 ]; then  # the CPU, 32 px, a small network, two epochs: the script's logic only
  BUDGET=${SESSION_BUDGET:-1500}
  DEV=cpu
  EPOCHS=2
  TRAIN=(trainer.accelerator=cpu data.image_size=32 "model.widths=[16,32,32]" model.latent_dim=16
    callbacks.image_logger.n_samples=4 callbacks.image_logger.n_images=4)
  SPEED=(--models vae_unet --quick --size 32 --batch 8 --step-batches 8 --limit 24 --epochs 2
    --steps 2 --warmup 1)
  COMPILE=(--models vae --size 32 --batch 8 --step-batches 8 --limit 16 --epochs 1 --steps 1
    --warmup 1 --compile-modes reduce-overhead --skip reference,end_to_end)
  EVAL=(device=cpu n_samples=96 "samplers=[prior,gmm]" "temperatures=[1.0]" gmm_components=2
    iwae_k=4 iwae_images=16 n_pairs=8 n_show_pairs=2 interp_steps=5 probe_train_max=32
    "shifts=[zoom_out]" cnn_epochs=1 batch_size=64)
  LIMITS=(speed=300 train_b128=200 train_b512=200 eval=300 compile=600)
else
  BUDGET=${SESSION_BUDGET:-540}
  DEV=cuda
  EPOCHS=10
  TRAIN=()
  SPEED=(--models vae_unet --step-batches 128,512,2048 --epochs 4 --child-timeout 100)
  # 4 epochs: a compiled run may recompile once more (dynamic shapes) after its first epoch
  COMPILE=(--models vae_unet --step-batches 512 --epochs 4 --child-timeout 150
    --compile-modes reduce-overhead,default --skip reference)
  EVAL=(device=cuda)
  LIMITS=(speed=150 train_b128=110 train_b512=90 eval=120 compile=400)
fi
limit_of() { local kv; for kv in "${LIMITS[@]}"; do [ "${kv%%=*}" = "$1" ] && echo "${kv#*=}"; done; }

START=$(date +%s)
FAILED=()
step() {  # step <name> <command...>: run under min(its limit, what is left), log, time it
  local name=$1; shift
  if [[ ",${GPU_SESSION_SKIP:-}," == *",$name,"* ]]; then
    echo "== $name: skipped (GPU_SESSION_SKIP)"; FAILED+=("$name:skipped"); WALL=0; return 1
  fi
  local left=$((BUDGET - ($(date +%s) - START) - 10)) limit
  limit=$(limit_of "$name"); limit=${limit:-60}
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 20 ]; then
    echo "== $name: skipped, ${left}s of the budget left"; FAILED+=("$name:skipped"); return 1
  fi
  echo "== $name: up to ${limit}s, $(date -u +%H:%M:%S)"
  local t0 rc
  t0=$(date +%s.%N)
  timeout -k 10 "$limit" "$@" >"$LOGS/$name.log" 2>&1
  rc=$?
  WALL=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  echo "== $name: rc=$rc in ${WALL}s"
  if [ "$rc" -ne 0 ]; then
    FAILED+=("$name:rc$rc"); tail -n 25 "$LOGS/$name.log"
  else
    grep -E "^(vae|ae|wrote)|Error|error:" "$LOGS/$name.log" | cut -c1-400 | tail -n 12
  fi
  return "$rc"
}
finish() {
  tar -czf "$OUT/logs.tar.gz" -C "$WORK" logs 2>/dev/null
  echo "== done in $(($(date +%s) - START))s; failed or skipped: ${FAILED[*]:-none}"
  echo "== files: $(cd "$OUT" && ls | tr '\n' ' ')"
}
trap finish EXIT

echo "== gpu_session: dry=$DRY device=$DEV budget=${BUDGET}s data=${FACEMASK_ROOT:-synthetic}"
{
  [ "$DEV" = cuda ] && nvidia-smi
  "$PY" - <<'EOF'
import importlib, sys, torch
print("python", sys.version.split()[0])
for name in ("torch", "pytorch_lightning", "torchmetrics", "torchvision", "hydra", "omegaconf"):
    mod = importlib.import_module(name)
    print(name, getattr(mod, "__version__", "?"), getattr(mod, "__file__", ""))
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0), "bf16", torch.cuda.is_bf16_supported())
EOF
} >"$OUT/env.txt" 2>&1
grep -E "^(python|torch|pytorch_lightning|hydra|omegaconf|gpu) " "$OUT/env.txt"

# 2. eager speed: the three paths side by side
step speed "$PY" -m benchmarks.speed --device "$DEV" "${SPEED[@]}" --out "$OUT/speed_gpu.json"

# 3-4. the same number of epochs at batch 128 and with the large-batch profile
RUNS=$WORK/runs
step train_b128 "$PY" train.py trainer=gpu "trainer.max_epochs=$EPOCHS" "${TRAIN[@]}" \
  "hydra.run.dir=$RUNS/b128"
W128=$WALL
step train_b512 "$PY" train.py experiment=gpu_fast "trainer.max_epochs=$EPOCHS" "${TRAIN[@]}" \
  "hydra.run.dir=$RUNS/b512"
W512=$WALL
"$PY" -m benchmarks.run_summary "$RUNS/b128" "$RUNS/b512" --wall "b128=$W128" --wall "b512=$W512" \
  --out "$OUT/elbo_10epochs.json" >"$LOGS/run_summary.log" 2>&1 ||
  { FAILED+=("run_summary"); tail -n 5 "$LOGS/run_summary.log"; }
grep -E '"(batch_size|final_val_elbo|median_epoch_s|wall_s)"' "$OUT/elbo_10epochs.json" 2>/dev/null

# 5. evaluation of both runs, FID off
step eval "$PY" eval.py "runs=[$RUNS/b128,$RUNS/b512]" fid=false "${EVAL[@]}" \
  "hydra.run.dir=$WORK/eval"
EW=$WALL
cp "$WORK/eval/report.md" "$OUT/eval_report.md" 2>/dev/null
"$PY" - "$WORK/eval/metrics.json" "$EW" "$OUT/eval_timing.json" <<'EOF' || FAILED+=("eval_timing")
import json, sys
from pathlib import Path
src, wall, out = Path(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3])
metrics = json.loads(src.read_text()) if src.is_file() else {}
timings = metrics.get("timings_s") or {k: v for k, v in metrics.items() if "timing" in k}
out.write_text(json.dumps({"wall_s": wall, "timings_s": timings, "runs": ["b128", "b512"]}, indent=2))
print("eval wall", wall, "s; sections", json.dumps(timings)[:600])
EOF

# 6. compiled steps: CUDA graphs (reduce-overhead) and torch's default mode
step compile "$PY" -m benchmarks.speed --device "$DEV" "${COMPILE[@]}" \
  --out "$OUT/speed_gpu_compile.json"
exit 0
