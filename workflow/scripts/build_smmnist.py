from pathlib import Path

from pipeline.data.smmnist import MovingDigitsSpec, build_smmnist
from pipeline.stage import run_stage

part = snakemake.params.smmnist
run_stage(
    snakemake,
    build_smmnist,
    mnist_dir=Path(snakemake.input.mnist).parent,
    output=snakemake.output[0],
    train_sequences=part["train_sequences"],
    test_sequences=part["test_sequences"],
    judge_train_sequences=part["judge_train_sequences"],
    spec=MovingDigitsSpec(frames=part["frames"]),
    seed=snakemake.params.seed,
)
