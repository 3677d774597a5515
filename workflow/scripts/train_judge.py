from pipeline.stage import run_stage
from pipeline.train.judge import train_judge

run_stage(
    snakemake,
    train_judge,
    dataset=snakemake.input.dataset,
    output=snakemake.output.judge,
    accuracy=snakemake.output.accuracy,
)
