rule build_sprites:
    """Composite the LPC sheets into Sprites (DSVAE recipe): 9 actions x 1296 characters, seed-423 split."""
    input:
        sheets="resources/lpc-sprites/SHA256SUMS",
    output:
        "results/data/sprites.h5",
    log:
        "logs/build_sprites/sprites.log",
    benchmark:
        "benchmarks/build_sprites/sprites.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        train_characters=config["sprites"]["train_characters"],
        test_characters=config["sprites"]["test_characters"],
    script:
        "../scripts/build_sprites.py"
