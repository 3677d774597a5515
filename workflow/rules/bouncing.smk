rule build_bouncing:
    """Simulate the bouncing-ball dataset of DSVAE section 4.3 (pymunk, elastic walls of a fixed polygon)."""
    output:
        "results/data/bouncing.h5",
    log:
        "logs/build_bouncing/bouncing.log",
    benchmark:
        "benchmarks/build_bouncing/bouncing.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        bouncing=config["bouncing"],
        seed=config["seed"],
    script:
        "../scripts/build_bouncing.py"
