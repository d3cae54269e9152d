"""Network deltas shared by several data sets (NCSN++ as configured in the 2021 code, app. H)."""
import ml_collections


def ncsnpp_continuous(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """NCSN++ at 32-64 px (the CIFAR-10 VE model): 4 res blocks, FIR, residual input path,
    Fourier embedding of the noise level."""
    m = config.model
    m.name = "ncsnpp"
    m.nf = 128
    m.ch_mult = (1, 2, 2, 2)
    m.num_res_blocks = 4
    m.attn_resolutions = (16,)
    m.dropout = 0.1
    m.fir = True
    m.fir_kernel = (1, 3, 3, 1)
    m.skip_rescale = True
    m.resblock_type = "biggan"
    m.progressive = "none"
    m.progressive_input = "residual"
    m.progressive_combine = "sum"
    m.embedding_type = "fourier"
    m.init_scale = 0.0
    m.ema_rate = 0.999
    return config


def ddpmpp_continuous(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """DDPM++ (the CIFAR-10 VP / sub-VP model): the NCSN++ trunk without FIR or progressive paths,
    positional embedding of 999 t, eps prediction with a mean-reduced loss, EMA 0.9999."""
    ncsnpp_continuous(config)
    m = config.model
    m.fir = False
    m.progressive_input = "none"
    m.embedding_type = "positional"
    m.ema_rate = 0.9999
    config.training.reduce_mean = True
    return config


def ddpm(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """DDPM's U-Net (Ho et al. 2020): 2 res blocks per level, attention at 16 px (35.22 M at 32 px)."""
    m = config.model
    m.name = "ddpm"
    m.nf = 128
    m.ch_mult = (1, 2, 2, 2)
    m.num_res_blocks = 2
    m.attn_resolutions = (16,)
    m.dropout = 0.1
    m.resamp_with_conv = True
    m.ema_rate = 0.9999
    return config


def ncsnpp_highres(config: ml_collections.ConfigDict, image_size: int) -> ml_collections.ConfigDict:
    """NCSN++ at 256 or 1024 px (CelebA-HQ, FFHQ, LSUN) as in the 2021 code: output-skip /
    input-skip progressive paths, 2000 noise scales, 2.4 M iterations. 256 px: nf 128, batch 64,
    EMA 0.999, snr 0.075; 1024 px: nf 16 with 8 levels, batch 8, EMA 0.9999, snr 0.15."""
    if image_size not in (256, 1024):
        raise ValueError(f"high-resolution NCSN++ is defined for 256 or 1024 px, not {image_size}")
    ncsnpp_continuous(config)
    m, t = config.model, config.training
    if image_size == 256:
        m.nf, m.ch_mult, m.num_res_blocks, m.ema_rate = 128, (1, 1, 2, 2, 2, 2, 2), 2, 0.999
        t.batch_size, config.sampling.snr, config.eval.batch_size = 64, 0.075, 64
    else:
        m.nf, m.ch_mult, m.num_res_blocks, m.ema_rate = 16, (1, 2, 4, 8, 16, 32, 32, 32), 1, 0.9999
        t.batch_size, config.sampling.snr, config.eval.batch_size = 8, 0.15, 8
    m.dropout = 0.0
    m.progressive = "output_skip"
    m.progressive_input = "input_skip"
    m.num_scales = 2000
    config.data.image_size = image_size
    config.data.num_channels = 3
    config.data.random_flip = True
    t.n_iters = 2_400_001
    t.snapshot_freq_for_preemption = 5_000
    config.sampling.batch_size = 4
    config.eval.enable_bpd = False
    return config
