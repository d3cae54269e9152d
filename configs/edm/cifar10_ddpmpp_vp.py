"""EDM's CIFAR-10 recipe: DDPM++ trunk, vp preconditioning and loss (see configs/edm/__init__.py)."""
from configs.default import get_default_config
from configs.edm import edm_cifar10


def get_config():
    return edm_cifar10(get_default_config(), "ddpmpp", "vp")
