"""CelebA 64x64, VP SDE, DDPM++ continuous (NCSN++ trunk without FIR and progressive paths)."""
from configs import families
from configs.celeba import ncsnpp_continuous


def get_config():
    config = families.vp(ncsnpp_continuous.get_config())
    m = config.model
    m.fir = False
    m.progressive_input = "none"
    m.embedding_type = "positional"
    m.ema_rate = 0.9999
    return config
