"""NCSN++ deep (continuous) on CIFAR-10 under the VE SDE: 8 blocks per resolution (107.59 M), the
FID 2.20 model of Song et al. 2021."""
from configs.ve import cifar10_ncsnpp_continuous


def get_config():
    config = cifar10_ncsnpp_continuous.get_config()
    config.model.num_res_blocks = 8
    config.training.n_iters = 950_001  # as the 2021 deep configs
    return config
