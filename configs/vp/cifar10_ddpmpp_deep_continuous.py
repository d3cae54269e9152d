"""DDPM++ deep (continuous) on CIFAR-10 under the VP SDE: 8 blocks per resolution (106.63 M)."""
from configs.vp import cifar10_ddpmpp_continuous


def get_config():
    config = cifar10_ddpmpp_continuous.get_config()
    config.model.num_res_blocks = 8
    config.training.n_iters = 950_001  # as the 2021 deep configs
    return config
