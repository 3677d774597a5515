from pathlib import Path

from pipeline.data.sprites import build_sprites
from pipeline.stage import run_stage

run_stage(
    snakemake,
    build_sprites,
    sheets_dir=Path(snakemake.input.sheets).parent,
    output=snakemake.output[0],
    train_characters=snakemake.params.train_characters,
    test_characters=snakemake.params.test_characters,
)
