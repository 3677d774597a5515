from pathlib import Path

from pipeline.data.smmnist import build_smmnist
from pipeline.stage import run_stage

run_stage(snakemake, build_smmnist, mnist_dir=Path(snakemake.input.mnist).parent, output=snakemake.output[0])
