from pipeline.evaluate.dsvae_study import evaluate_dynamics
from pipeline.stage import run_stage

run_stage(
    snakemake,
    evaluate_dynamics,
    models=list(snakemake.input.models),
    dataset=snakemake.input.dataset,
    output_csv=snakemake.output.csv,
    output_png=snakemake.output.png,
)
