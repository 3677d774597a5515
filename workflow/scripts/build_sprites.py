from pathlib import Path

from pipeline.data.sprites import build_sprites
from pipeline.stage import run_stage

run_stage(
    snakemake, build_sprites, sheets_dir=Path(snakemake.input.sheets).parent, output=snakemake.output[0]
)
