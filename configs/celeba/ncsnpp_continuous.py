"""CelebA 64x64 (TFDS celeb_a, centre crop 140, resized), VE SDE with sigma_max 90 (the largest
pairwise distance, Song & Ermon 2020, technique 1), NCSN++ continuous."""
from configs import architectures, families
from configs.default import get_default_config


def get_config():
    config = architectures.ncsnpp_continuous(families.ve(get_default_config()))
    config.data.dataset = "celeba"
    config.data.image_size = 64
    config.data.num_channels = 3
    config.data.random_flip = True
    config.model.sigma_max = 90.0
    config.sampling.snr = 0.17
    config.eval.bpd_dataset = "test"
    config.eval.fid_dataset = "train"
    return config
