rule make_dsvae_table1:
    """DSVAE's own Sprites table: judge disagreement and KL of attribute marginals of each DSVAE variant."""
    input:
        models=[path for _, _, path in DSVAE_TABLE1_MODELS],
        judge="results/judges/sprites/judge.pt",
        dataset="results/data/sprites.h5",
        published="workflow/published/dsvae_table1.csv",
    output:
        csv=report("results/tables/dsvae_table1.csv", category="Tables"),
        md="results/tables/dsvae_table1.md",
    log:
        "logs/make_dsvae_table1/sprites.log",
    benchmark:
        "benchmarks/make_dsvae_table1/sprites.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        gpu=1,
    params:
        methods=[method for method, _, _ in DSVAE_TABLE1_MODELS],
        seeds=[seed for _, seed, _ in DSVAE_TABLE1_MODELS],
        evaluate=config["evaluate"],
    script:
        "../scripts/make_dsvae_table1.py"


rule evaluate_dynamics:
    """DSVAE Fig. 8: wrong pixels of reconstruction and imputation against missing frames, bouncing balls."""
    input:
        models=[path for _, _, path in DYNAMICS_MODELS],
        dataset="results/data/bouncing.h5",
    output:
        csv=report("results/tables/dsvae_dynamics.csv", category="Tables"),
        png=report("results/tables/dsvae_dynamics.png", category="Figures"),
    log:
        "logs/evaluate_dynamics/bouncing.log",
    benchmark:
        "benchmarks/evaluate_dynamics/bouncing.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        gpu=1,
    params:
        methods=[method for method, _, _ in DYNAMICS_MODELS],
        seeds=[seed for _, seed, _ in DYNAMICS_MODELS],
        evaluate=config["evaluate"],
    script:
        "../scripts/evaluate_dynamics.py"
