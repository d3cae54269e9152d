"""FFHQ 256x256, VE SDE with sigma_max 348.0, NCSN++ continuous.

FFHQ is not in the TFDS catalog: point `data.data_dir` at a folder of the images (optionally
with `train/` and `test/` sub-folders), e.g. `data.data_dir=/data/ffhq/images256`.
"""
from configs import architectures, families
from configs.default import get_default_config


def get_config():
    config = architectures.ncsnpp_highres(families.ve(get_default_config()), 256)
    config.data.dataset = "image_folder"
    config.model.sigma_max = 348.0
    config.eval.bpd_dataset = "train"
    config.eval.fid_dataset = "train"
    return config
