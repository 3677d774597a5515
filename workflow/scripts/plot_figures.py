from pipeline.report.figures import plot_figures
from pipeline.stage import run_stage

run_stage(
    snakemake,
    plot_figures,
    model=snakemake.input.model,
    dataset=snakemake.input.dataset,
    swap=snakemake.output.swap,
    generation=snakemake.output.generation,
    method=snakemake.wildcards.method,
)
