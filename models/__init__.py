"""Torch modules only: one file per model family, shared blocks in `blocks.py`.

These modules know nothing of the workflow: which families it trains, how their configs are derived from
a dataset and how they are trained is the workflow's business (the family registry, README: code map).
"""

from models.dsvae import DSVAE, DSVAEConfig
from models.fhvae import FHVAE, FHVAEConfig
from models.judge import Judge, JudgeConfig, LocatingJudge, LocatingJudgeConfig
from models.mocogan import MoCoGAN, MoCoGANConfig
from models.s3vae import S3VAE, S3VAEConfig
from models.unordered import Unordered, UnorderedConfig

__all__ = [
    "DSVAE",
    "DSVAEConfig",
    "FHVAE",
    "FHVAEConfig",
    "Judge",
    "JudgeConfig",
    "LocatingJudge",
    "LocatingJudgeConfig",
    "MoCoGAN",
    "MoCoGANConfig",
    "S3VAE",
    "S3VAEConfig",
    "Unordered",
    "UnorderedConfig",
]
