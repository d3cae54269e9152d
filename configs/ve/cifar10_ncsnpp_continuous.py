"""NCSN++ (continuous) on CIFAR-10 under the VE SDE (reference: 62.76 M parameters): PC sampling
with reverse diffusion and Langevin (snr 0.16)."""
from configs import architectures, families
from configs.default import get_default_config
from configs.vp import cifar10


def get_config():
    return architectures.ncsnpp_continuous(cifar10(families.ve(get_default_config())))
