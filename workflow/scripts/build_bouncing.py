from pipeline.data.bouncing import build_bouncing
from pipeline.stage import run_stage

part = snakemake.params.bouncing
run_stage(
    snakemake,
    build_bouncing,
    output=snakemake.output[0],
    train_sequences=part["train_sequences"],
    test_sequences=part["test_sequences"],
    frames=part["frames"],
    image_size=part["image_size"],
    shape=part["shape"],
    seed=snakemake.params.seed,
)
