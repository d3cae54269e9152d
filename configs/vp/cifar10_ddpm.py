"""DDPM (Ho et al. 2020) on CIFAR-10: discrete VP chain, eps loss, ancestral sampling (35.22 M)."""
from configs import architectures, families
from configs.default import get_default_config
from configs.vp import cifar10


def get_config():
    return architectures.ddpm(cifar10(families.ddpm(get_default_config())))
