"""DDPM++ (continuous) on CIFAR-10 under the VP SDE (reference: 61.80 M parameters)."""
from configs import architectures, families
from configs.default import get_default_config
from configs.vp import cifar10


def get_config():
    return architectures.ddpmpp_continuous(cifar10(families.vp(get_default_config())))
