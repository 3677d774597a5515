"""Torch modules only: one file per model family, shared blocks in `blocks.py`.

`FAMILIES` maps a family name to its (config dataclass, module) pair, so a saved model is
rebuilt from its family name and config alone.
"""

from models.dsvae import DSVAE, DSVAEConfig
from models.fhvae import FHVAE, FHVAEConfig
from models.judge import Judge, JudgeConfig
from models.mocogan import MoCoGAN, MoCoGANConfig
from models.s3vae import S3VAE, S3VAEConfig
from models.unordered import Unordered, UnorderedConfig

FAMILIES = {
    "s3vae": (S3VAEConfig, S3VAE),
    "dsvae": (DSVAEConfig, DSVAE),
    "unordered": (UnorderedConfig, Unordered),
    "mocogan": (MoCoGANConfig, MoCoGAN),
    "fhvae": (FHVAEConfig, FHVAE),
    "judge": (JudgeConfig, Judge),
}


def build(family: str, config: dict):
    if family not in FAMILIES:
        raise KeyError(f"unknown model family '{family}': known are {sorted(FAMILIES)}")
    config_cls, module_cls = FAMILIES[family]
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    return module_cls(config_cls(**fields))
