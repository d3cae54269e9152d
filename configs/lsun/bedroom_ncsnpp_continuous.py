"""LSUN bedroom 256x256 (TFDS lsun/bedroom, centre-cropped and resized), VE SDE with sigma_max 378.0,
NCSN++ continuous."""
from configs import architectures, families
from configs.default import get_default_config


def get_config():
    config = architectures.ncsnpp_highres(families.ve(get_default_config()), 256)
    config.data.dataset = "lsun_bedroom"
    config.model.sigma_max = 378.0
    config.eval.bpd_dataset = "validation"  # TFDS lsun has train and validation splits
    config.eval.fid_dataset = "train"
    return config
