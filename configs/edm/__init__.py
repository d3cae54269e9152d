"""The CIFAR-10 recipe of EDM (Karras et al. 2022, table 2 and app. F.2; NVlabs/edm `train.py`):
DDPM++ or NCSN++ trunks under VP, VE or EDM preconditioning, each with its own loss.

| file               | network | preconditioning | loss (EDM's name)                    |
|--------------------|---------|-----------------|--------------------------------------|
| cifar10_ddpmpp_vp  | DDPM++  | vp              | dsm on the VP SDE (= VPLoss)         |
| cifar10_ncsnpp_ve  | NCSN++  | ve              | dsm on the VE SDE 0.02..100 (VELoss) |
| cifar10_ddpmpp_edm | DDPM++  | edm             | edm (EDMLoss, ln sigma ~ N(-1.2, 1.2^2)) |
| cifar10_ncsnpp_edm | NCSN++  | edm             | edm                                  |

Shared: class-conditional on the 10 labels (EDM's headline 1.79 FID; set model.num_classes=0 for
the unconditional rows), data in [-1, 1], 128 channels at 32/16/8 px (ch_mult 2, 2, 2), 4 blocks
per level, attention at 16 px, dropout 0.13, Adam lr 1e-3 with a 10 Mimg warm-up, batch 512 for
200 Mimg, EMA half-life 0.5 Mimg, no gradient clipping; EDM-Heun sampling with 18 steps (35 NFE),
rho 7, sigma in [0.002, 80]. Not reproduced: EDM's geometric augmentation (p = 0.12), and its
SongUNet details that differ from NCSN++ (e.g. the noise channels of NCSN++'s Fourier map).
"""
import ml_collections

from configs import architectures
from configs.vp import cifar10

BATCH = 512
STEPS = 200_000_000 // BATCH  # 200 Mimg
EMA_RATE = 0.5 ** (BATCH / 500_000)  # half-life 0.5 Mimg
WARMUP = 10_000_000 // BATCH  # lr ramp-up 10 Mimg


def edm_cifar10(config: ml_collections.ConfigDict, arch: str, precond: str) -> ml_collections.ConfigDict:
    """The EDM recipe for `arch` ("ddpmpp" | "ncsnpp") under `precond` ("vp" | "ve" | "edm")."""
    cifar10(config)
    if arch == "ddpmpp":
        architectures.ddpmpp_continuous(config)
    else:
        architectures.ncsnpp_continuous(config)
    m, t, o, s = config.model, config.training, config.optim, config.sampling
    m.ch_mult = (2, 2, 2)
    m.num_res_blocks = 4
    m.dropout = 0.13
    m.ema_rate = EMA_RATE
    m.scale_by_sigma = False
    m.num_classes = 10
    m.precond = precond
    config.data.centered = True
    config.data.random_flip = False  # EDM flips inside its augmentation pipeline only
    t.batch_size = BATCH
    t.n_iters = STEPS
    t.reduce_mean = False  # EDM sums the loss over pixels
    o.lr = 1e-3
    o.warmup = WARMUP
    o.grad_clip = -1.0
    o.beta1 = 0.9
    o.eps = 1e-8
    s.method = "edm_heun"
    s.num_steps = 18
    s.rho = 7.0
    s.sigma_min = 0.002
    s.sigma_max = 80.0
    if precond == "vp":  # VPLoss: t ~ U(1e-5, 1) on the VP SDE (beta_d 19.9, beta_min 0.1)
        t.sde, t.loss, t.eps = "vpsde", "dsm", 1e-5
        m.beta_min, m.beta_max = 0.1, 20.0
    elif precond == "ve":  # VELoss: ln sigma ~ U(ln 0.02, ln 100), the VE SDE at uniform t
        t.sde, t.loss = "vesde", "dsm"
        m.sigma_min, m.sigma_max = 0.02, 100.0
        s.sigma_min = 0.02
    else:  # EDMLoss; the VE SDE on [0.002, 80] only frames sampling and likelihood in t
        t.sde, t.loss = "vesde", "edm"
        m.sigma_min, m.sigma_max, m.sigma_data = 0.002, 80.0, 0.5
    return config
