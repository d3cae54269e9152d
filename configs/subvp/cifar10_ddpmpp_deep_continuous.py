"""DDPM++ deep (continuous) on CIFAR-10 under the sub-VP SDE: 8 blocks per resolution (106.63 M),
the 2.99 bits/dim model of Song et al. 2021 (table 2, probability-flow likelihood)."""
from configs import families
from configs.vp import cifar10_ddpmpp_deep_continuous


def get_config():
    return families.subvp(cifar10_ddpmpp_deep_continuous.get_config())
