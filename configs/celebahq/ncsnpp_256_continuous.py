"""CelebA-HQ 256x256 (TFDS celeb_a_hq/256), VE SDE with sigma_max 348, NCSN++ continuous."""
from configs import architectures, families
from configs.default import get_default_config


def get_config():
    config = architectures.ncsnpp_highres(families.ve(get_default_config()), 256)
    config.data.dataset = "celebahq256"
    config.model.sigma_max = 348.0
    config.eval.bpd_dataset = "train"  # celeb_a_hq has a single split
    config.eval.fid_dataset = "train"
    return config
