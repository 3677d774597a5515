from pipeline.report.figures import plot_latent_space
from pipeline.stage import run_stage

run_stage(
    snakemake,
    plot_latent_space,
    model=snakemake.input.model,
    dataset=snakemake.input.dataset,
    grid=snakemake.output.grid,
    trace=snakemake.output.trace,
    method=snakemake.wildcards.method,
)
