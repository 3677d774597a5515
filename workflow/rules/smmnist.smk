rule build_smmnist:
    """Stochastic Moving MNIST (Denton & Fergus 2018): two bouncing digits, a new random velocity per bounce."""
    input:
        mnist="resources/mnist/SHA256SUMS",
    output:
        "results/data/smmnist.h5",
    log:
        "logs/build_smmnist/smmnist.log",
    benchmark:
        "benchmarks/build_smmnist/smmnist.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        smmnist=config["smmnist"],
        seed=config["seed"],
    script:
        "../scripts/build_smmnist.py"
