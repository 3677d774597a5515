#!/usr/bin/env bash
# Paper-scale S3VAE on Sprites on one GPU in one go, inside a time budget: (A) Sprites, its flow labels and
# judge; (plan) each row's epoch timed in the workflow's own train_model and the GPU's peak from a large
# matmul, which set how many epochs fit (benchmarks/gpu_paper_sprites.py plan); (B) the rows of
# workflow/presets/gpu.yaml (baseline, full, full_swap) trained that long, scored and diagnosed by the
# workflow; then Table 1 beside the published rows with each row's probes, seq/s and share of the peak.
#
#   bash benchmarks/gpu_paper_sprites.sh [MIRROR]          # CUDA, the gpu preset
#   TINY=1 bash benchmarks/gpu_paper_sprites.sh [MIRROR]   # the same path at the smoke preset's sizes on the CPU
#
# MIRROR: the data mirror, default .device-mirror (filled by benchmarks/gpu_prepare.sh). Where python3 cannot
# import snakemake (the device's image), benchmarks/gpu_prologue.sh first installs the carried wheels.
# Everything printed goes to $OUT/log.txt, the summary to $OUT/summary.md stage by stage, the logs and
# results (tables, metrics, benchmarks) to $OUT/run.tar.gz, also when the run is cut short; OUT defaults to
# results/gpu_run. BUDGET_S: seconds from start to end (default 450, inside the issue's 8 minutes);
# RESERVE_S: kept after the trainings for scoring, diagnostics and the table (default 90); COMMIT: the
# commit to name where the checkout has no .git.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
out=${OUT:-results/gpu_run}
mkdir -p "$out"
exec > >(tee -a "$out/log.txt") 2>&1
export PYTHONUNBUFFERED=1
mirror=${1:-.device-mirror}
budget=${BUDGET_S:-450}
reserve=${RESERVE_S:-90}
cores=$(nproc)
if [[ "${TINY:-0}" == 1 ]]; then
  settings=(preset=smoke device=cpu "table_datasets={table1: [sprites]}" "tables=[table1]"
    "methods=[baseline, full, full_swap]" "train={seeds: 1}")
else
  settings=(preset=gpu)
fi
settings+=("mirror=$mirror")

note() { echo "$*" | tee -a "$out/summary.md"; }  # a line of the summary, printed too
since() { echo $(($(date +%s) - $1)); }
pack() {  # the run's logs and results that are there, into one file that comes back
  local found=() path
  for path in logs benchmarks/*/ results/tables results/metrics results/judges results/models; do
    [[ -e $path ]] && found+=("$path")
  done
  if ((${#found[@]})); then
    tar czf "$out/run.tar.gz" --exclude=__pycache__ --exclude='*.pt' "${found[@]}"
  fi
}
trap pack EXIT
trap 'exit 143' TERM INT

if [[ ! -d $mirror/lpc-sprites ]]; then
  echo "error: $mirror/lpc-sprites is not a folder: run bash benchmarks/gpu_prepare.sh (it copies" \
    "../shared/data/lpc-sprites into .device-mirror/; carry .device-mirror) or pass the mirror as the first argument" >&2
  exit 1
fi
note "# Paper-scale Sprites on one GPU: benchmarks/gpu_paper_sprites.sh"
note ""
note "$(date -u '+%F %T') UTC, commit ${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}," \
  "$(python3 --version), $cores cores, --config ${settings[*]}, budget $budget s"
python3 -c 'import snakemake' 2>/dev/null || source benchmarks/gpu_prologue.sh
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the checkout's pipeline/ and models/, not installed
note "set-up (wheels, if any): $(since "$start") s"

stage=$(date +%s)
python3 -m snakemake results/labels/sprites/flow.h5 results/judges/sprites/judge.pt --cores "$cores" \
  --set-threads label_flow=$((cores > 1 ? cores - 1 : 1)) train_judge=1 --config "${settings[@]}"
note "stage A (Sprites, flow labels, judge): $(since "$stage") s"

stage=$(date +%s)
python3 benchmarks/gpu_paper_sprites.py plan --out "$out" --deadline $((start + budget)) --reserve-s "$reserve" \
  --cores "$cores" -- "${settings[@]}"
source "$out/plan.env"  # EPOCHS, TRAIN, GPU_JOBS, SCORING_GPU, THREADS
note "calibration and plan: $(since "$stage") s"

stage=$(date +%s) failed=0
# At most GPU_JOBS trainings at once; scoring and diagnostics count against it only where processes could not
# share the GPU (SCORING_GPU=1). --keep-going: a row that fails leaves the others to finish and come back.
if ! python3 -m snakemake results/tables/table1.csv --cores "$cores" --keep-going --resources gpu="$GPU_JOBS" \
  --set-resources evaluate_model:gpu="$SCORING_GPU" diagnose_model:gpu="$SCORING_GPU" \
  --config "${settings[@]}" "train=$TRAIN" threads="$THREADS"; then
  note "stage B FAILED (log.txt says where); what it made is reported below"
  failed=1
fi
note "stage B ($EPOCHS epochs per row, $GPU_JOBS training(s) at a time, scoring, diagnostics, Table 1): $(since "$stage") s"

python3 benchmarks/gpu_paper_sprites.py report --out "$out" -- "${settings[@]}"
note ""
note "wall time: $(since "$start") s (budget $budget s)"
exit "$failed"
