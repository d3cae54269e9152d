"""Embedded demo: continuous VP SDE, a small DDPM++-style U-Net on scikit-learn's 8x8 digits.

Sized for the README demo (about 10 minutes of training on a 2-core CPU); no download.
"""
from configs import families
from configs.default import get_default_config


def get_config():
    config = families.vp(get_default_config())
    training = config.training
    training.batch_size = 128
    training.n_iters = 3_000
    training.log_freq = 50
    training.eval_freq = 250
    training.snapshot_freq = 1_000
    training.snapshot_freq_for_preemption = 250
    training.reduce_mean = True

    config.sampling.batch_size = 64
    config.sampling.num_steps = 250
    config.eval.batch_size = 100
    config.eval.num_samples = 1000

    data = config.data
    data.dataset = "digits"
    data.image_size = 8
    data.num_channels = 1
    # Dequantised in the digits' own 17 levels (as bits/dim is measured): without it the data sit
    # on 17 spikes per pixel and the model's flow sharpens around them without end.
    data.uniform_dequantization = True

    model = config.model
    model.name = "ncsnpp"
    model.nf = 32
    model.ch_mult = (1, 2)
    model.num_res_blocks = 2
    model.attn_resolutions = (4,)
    model.dropout = 0.0
    model.ema_rate = 0.999
    model.embedding_type = "positional"
    model.resblock_type = "biggan"

    config.optim.lr = 2e-3
    config.optim.warmup = 200
    return config
