"""DDPM++ (continuous) on CIFAR-10 under the sub-VP SDE (61.80 M parameters, as under VP)."""
from configs import families
from configs.vp import cifar10_ddpmpp_continuous


def get_config():
    return families.subvp(cifar10_ddpmpp_continuous.get_config())
