rule evaluate_model:
    """Table 1 metrics of one model: regenerate test clips with one latent fixed, score with the judge."""
    input:
        model="results/models/{dataset}/{method}/seed{training_seed}/model.pt",
        judge="results/judges/{dataset}/judge.pt",
        dataset="results/data/{dataset}.h5",
    output:
        output="results/metrics/{dataset}/{method}/seed{training_seed}.csv",
    log:
        "logs/evaluate_model/{dataset}_{method}_seed{training_seed}.log",
    benchmark:
        "benchmarks/evaluate_model/{dataset}_{method}_seed{training_seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        gpu=requested_gpus(config["device"]),
    params:
        evaluate=config["evaluate"],
        bf16=config["train"]["bf16"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/stage.py"


rule diagnose_model:
    """Where each factor lives: judge on reconstructions and swaps, linear probes of z_f and z_1:T, loss terms."""
    input:
        model="results/models/{dataset}/{method}/seed{training_seed}/model.pt",
        judge="results/judges/{dataset}/judge.pt",
        dataset="results/data/{dataset}.h5",
    output:
        output_csv="results/metrics/{dataset}/{method}/seed{training_seed}_diagnostics.csv",
        output_png=report(
            "results/metrics/{dataset}/{method}/seed{training_seed}_probes.png",
            category="Diagnostics",
            subcategory="{dataset}",
            caption="../report/probes.rst",
            labels={"model": "{method}", "seed": "{training_seed}"},
        ),
    log:
        "logs/diagnose_model/{dataset}_{method}_seed{training_seed}.log",
    benchmark:
        "benchmarks/diagnose_model/{dataset}_{method}_seed{training_seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        gpu=requested_gpus(config["device"]),
    params:
        evaluate=config["evaluate"],
        bf16=config["train"]["bf16"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/stage.py"


rule evaluate_verification:
    """Speaker verification EER of the z_f and z_1:T utterance embeddings over all test-utterance pairs."""
    input:
        model="results/models/{dataset}/{method}/z{dim}/model.pt",
        dataset="results/data/{dataset}.h5",
    output:
        output="results/metrics/{dataset}/{method}/z{dim}_verification.csv",
    log:
        "logs/evaluate_verification/{dataset}_{method}_z{dim}.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        batch_size=config["evaluate"]["batch_size"],
        device=config["device"],
    script:
        "../scripts/stage.py"


rule make_dsvae_table1:
    """DSVAE's own Sprites table: judge disagreement and KL of attribute marginals of each DSVAE variant."""
    input:
        models=[path for _, _, path in DSVAE_TABLE1_MODELS],
        judge="results/judges/sprites/judge.pt",
        dataset="results/data/sprites.h5",
        published="workflow/published/dsvae_table1.csv",
    output:
        output=report(
            "results/tables/dsvae_table1.csv",
            category="Tables",
            labels={"table": "dsvae_table1", "file": "csv"},
        ),
        output_md="results/tables/dsvae_table1.md",
        output_html=report(
            "results/tables/dsvae_table1.html",
            category="Tables",
            caption="../report/dsvae_table1.rst",
            labels={"table": "dsvae_table1", "file": "rendered"},
        ),
    log:
        "logs/make_dsvae_table1/sprites.log",
    benchmark:
        "benchmarks/make_dsvae_table1/sprites.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        gpu=requested_gpus(config["device"]),
    params:
        methods=[method for method, _, _ in DSVAE_TABLE1_MODELS],
        seeds=[seed for _, seed, _ in DSVAE_TABLE1_MODELS],
        evaluate=config["evaluate"],
        bf16=config["train"]["bf16"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/stage.py"


rule evaluate_dynamics:
    """DSVAE Fig. 8: wrong pixels of reconstruction and imputation against missing frames, bouncing balls."""
    input:
        models=[path for _, _, path in DYNAMICS_MODELS],
        dataset="results/data/bouncing.h5",
    output:
        output_csv=report(
            "results/tables/dsvae_dynamics.csv",
            category="Tables",
            labels={"table": "dsvae_dynamics", "file": "csv"},
        ),
        output_png=report(
            "results/tables/dsvae_dynamics.png",
            category="Figures",
            subcategory="bouncing",
            caption="../report/dynamics.rst",
            labels={"model": "DSVAE stochastic vs LSTM", "figure": "Fig. 8"},
        ),
    log:
        "logs/evaluate_dynamics/bouncing.log",
    benchmark:
        "benchmarks/evaluate_dynamics/bouncing.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        gpu=requested_gpus(config["device"]),
    params:
        methods=[method for method, _, _ in DYNAMICS_MODELS],
        seeds=[seed for _, seed, _ in DYNAMICS_MODELS],
        evaluate=config["evaluate"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/stage.py"
