"""CelebA 64x64 with NCSNv2 (Song & Ermon 2020): discrete SMLD, 500 noise scales, annealed
Langevin dynamics."""
from configs import families
from configs.default import get_default_config


def get_config():
    config = families.smld(get_default_config())
    config.data.dataset = "celeba"
    config.data.image_size = 64
    config.data.num_channels = 3
    config.data.random_flip = True
    m = config.model
    m.name = "ncsnv2_64"
    m.sigma_max = 90.0
    m.num_scales = 500
    m.nf = 128
    m.nonlinearity = "elu"
    m.ema_rate = 0.999
    config.training.batch_size = 128
    config.training.reduce_mean = False
    config.optim.lr = 1e-4
    config.optim.warmup = 0
    config.optim.grad_clip = -1.0
    config.sampling.snr = 0.128
    config.sampling.denoise = False
    return config
