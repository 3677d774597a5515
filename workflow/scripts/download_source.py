from pipeline.data.download import fetch_source
from pipeline.stage import run_stage

run_stage(
    snakemake,
    fetch_source,
    source=snakemake.wildcards.source,
    dest=snakemake.output[0].rsplit("/", 1)[0],
    mirror=snakemake.config["mirror"],
)
