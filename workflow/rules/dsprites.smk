rule build_dsprites:
    """Generate moving dSprites from the seed (no download): shape, colour, scale static; motion, rotation dynamic."""
    output:
        "results/data/dsprites.h5",
    log:
        "logs/build_dsprites/dsprites.log",
    benchmark:
        "benchmarks/build_dsprites/dsprites.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        # both splits are held in memory: 1.15 GB of frames at paper scale
        mem_mb=3000,
    params:
        train_sequences=config["dsprites"]["train_sequences"],
        test_sequences=config["dsprites"]["test_sequences"],
        frames=config["dsprites"]["frames"],
        image_size=config["dsprites"]["image_size"],
        seed=config["seed"],
    script:
        "../scripts/build_dsprites.py"
