"""Torch modules only: one file per model family, shared blocks in `blocks.py`.

Which families exist, how their configs are derived and how they are trained: pipeline/train/families.py.
"""

from models.dsvae import DSVAE, DSVAEConfig
from models.fhvae import FHVAE, FHVAEConfig
from models.judge import Judge, JudgeConfig
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
    "MoCoGAN",
    "MoCoGANConfig",
    "S3VAE",
    "S3VAEConfig",
    "Unordered",
    "UnorderedConfig",
]
