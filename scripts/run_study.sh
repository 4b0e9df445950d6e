#!/usr/bin/env bash
# The real-data study of docs/results.md, stage by stage; each stage's runs land in logs/study/.
#   FACEMASK_ROOT=".../Face Mask Dataset" scripts/run_study.sh [stage ...]
# Stages: models anneal adversarial arch seeds samples (training) and eval_<stage> for each.
# EVAL_ARGS adds eval.py overrides to every report (e.g. EVAL_ARGS=fid=false: FID is the slow part).
# Long on 2 CPU cores (10 epochs of the U-Net VAE take ~8 min): run it in the background.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=logs/study
mkdir -p "$OUT"
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(models eval_models anneal eval_anneal adversarial eval_adversarial
  seeds eval_seeds arch eval_arch)

runs_of() { find "$@" -mindepth 1 -maxdepth 1 -type d -name '[0-9]*_*' | sort | paste -sd, -; }

evaluate() {  # evaluate <name> <run dir>...: report under logs/study/eval/<name>
  local name=$1; shift
  local runs; runs=$(printf '%s,' "$@"); runs=${runs%,}
  # shellcheck disable=SC2086  # EVAL_ARGS is a list of overrides
  $PY eval.py "runs=[$runs]" hydra.run.dir="$OUT/eval/$name" ${EVAL_ARGS:-} 2>&1 | tail -n 3
}

# wait for a training process started by an earlier invocation (e.g. WAIT_PID=1234)
[ -n "${WAIT_PID:-}" ] && while kill -0 "$WAIT_PID" 2>/dev/null; do sleep 10; done

for stage in "${stages[@]}"; do
  echo "== $stage $(date -u +%FT%TZ)"
  case $stage in
    models) $PY train.py experiment=ae_vs_vae hydra.sweep.dir="$OUT/ae_vs_vae/seed42" ;;
    anneal) $PY train.py experiment=anneal_sweep hydra.sweep.dir="$OUT/anneal_sweep" ;;
    adversarial) $PY train.py experiment=adversarial hydra.sweep.dir="$OUT/adversarial" ;;
    arch)
      $PY train.py experiment=resnet_blocks hydra.run.dir="$OUT/arch/resnet_blocks"
      $PY train.py experiment=no_augment hydra.run.dir="$OUT/arch/no_augment"
      $PY train.py experiment=conv_posterior hydra.run.dir="$OUT/arch/conv_posterior" ;;
    seeds)
      for s in 1 2; do
        $PY train.py experiment=ae_vs_vae seed=$s hydra.sweep.dir="$OUT/ae_vs_vae/seed$s"
      done
      $PY train.py -m experiment=conv_posterior seed=1,2 hydra.sweep.dir="$OUT/conv_posterior_seeds" ;;
    samples) $PY train.py -m model=vae,vae_unet trainer.max_epochs=10 hydra.sweep.dir="$OUT/samples/seed42" ;;
    eval_samples)  # every sampler x temperature, with and without BN statistics for sampling
      EVAL_ARGS="${EVAL_ARGS:-} sampling_bn=[false,true]" evaluate samples \
        "$OUT/samples/seed42/0_vae-linear" "$OUT/samples/seed42/1_vae_unet-linear" ;;
    eval_models) IFS=, read -ra r <<< "$(runs_of $OUT/ae_vs_vae/seed42)"; evaluate ae_vs_vae "${r[@]}" ;;
    eval_anneal) IFS=, read -ra r <<< "$(runs_of $OUT/anneal_sweep)"; evaluate anneal_sweep "${r[@]}" ;;
    eval_adversarial)  # VAE-GAN: last.ckpt, as its ELBO-best checkpoint predates the GAN term
      evaluate adversarial "$OUT/ae_vs_vae/seed42/0_ae" "$OUT/ae_vs_vae/seed42/1_vae-linear" \
        "$OUT/adversarial/0_aae" "$OUT/adversarial/1_vae_gan-linear/checkpoints/last.ckpt" ;;
    eval_arch)
      evaluate arch "$OUT/ae_vs_vae/seed42/2_vae_unet-linear" "$OUT/arch/resnet_blocks" \
        "$OUT/arch/no_augment" "$OUT/arch/conv_posterior" ;;
    eval_seeds)  # seed 42 is eval_models' report
      for s in 1 2; do
        IFS=, read -ra r <<< "$(runs_of $OUT/ae_vs_vae/seed$s)"
        evaluate "ae_vs_vae_seed$s" "${r[@]}"
      done ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
echo "== done $(date -u +%FT%TZ)"
