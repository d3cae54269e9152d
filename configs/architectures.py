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


def ncsnpp_highres(config: ml_collections.ConfigDict, image_size: int) -> ml_collections.ConfigDict:
    """NCSN++ at 256 or 1024 px (CelebA-HQ, FFHQ, LSUN): output-skip / input-skip progressive
    paths, 2000 noise scales, batch 8, PC sampling with snr 0.075."""
    if image_size not in (256, 1024):
        raise ValueError(f"high-resolution NCSN++ is defined for 256 or 1024 px, not {image_size}")
    ncsnpp_continuous(config)
    m = config.model
    if image_size == 256:
        m.nf, m.ch_mult, m.num_res_blocks = 128, (1, 1, 2, 2, 2, 2, 2), 2
    else:
        m.nf, m.ch_mult, m.num_res_blocks = 16, (1, 2, 4, 8, 16, 32, 32, 32), 1
    m.dropout = 0.0
    m.progressive = "output_skip"
    m.progressive_input = "input_skip"
    m.num_scales = 2000
    config.data.image_size = image_size
    config.data.num_channels = 3
    config.data.random_flip = True
    config.training.batch_size = 8
    config.training.snapshot_freq = 50_000
    config.sampling.snr = 0.075
    config.sampling.batch_size = 4
    config.eval.batch_size = 8
    return config
