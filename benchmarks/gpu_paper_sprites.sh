#!/usr/bin/env bash
# Paper-scale S3VAE (baseline, full) on Sprites on one GPU: data, flow labels, judge, two trainings, Table 1
# beside the published rows, and the training throughput (seq/s) of each job.
#
#   bash benchmarks/gpu_paper_sprites.sh [MIRROR]          # on a CUDA machine (workflow/presets/gpu.yaml)
#   TINY=1 bash benchmarks/gpu_paper_sprites.sh [MIRROR]   # the same DAG at the smoke preset's sizes on the CPU
#
# MIRROR is the data mirror (default ../shared/data). Results go to results/ as a normal run's do; rerunning
# resumes. Each training job logs its clips/s per epoch (logs/train_model/sprites_*_seed0.log).
set -euo pipefail
cd "$(dirname "$0")/.."
mirror=${1:-../shared/data}
if [[ "${TINY:-0}" == 1 ]]; then
  settings=(preset=smoke device=cpu threads=2 "table_datasets={table1: [sprites]}" "tables=[table1]" "methods=[baseline,full]")
  cores=2
else
  settings=(preset=gpu)
  cores=$(nproc)
fi
start=$(date +%s)
snakemake --cores "$cores" results/tables/table1.csv --config "${settings[@]}" "mirror=$mirror"
echo "wall time: $(($(date +%s) - start)) s"
echo "training throughput (last epoch of each job):"
for log in logs/train_model/sprites_*_seed0.log logs/train_judge/sprites.log; do
  [[ -f $log ]] && echo "  $log: $(grep -o '[0-9.]* clips/s' "$log" | tail -1)"
done
cat results/tables/table1.md
