"""configs/edm/: EDM's CIFAR-10 recipe (Karras et al. 2022, table 2 / app. F.2; NVlabs/edm train.py)."""
import pathlib

import pytest

from configs import load_config

EDM = pathlib.Path(__file__).resolve().parents[2] / "configs" / "edm"


@pytest.mark.parametrize("name, arch, precond, sde, loss, embedding", [
    ("cifar10_ddpmpp_vp", "ddpmpp", "vp", "vpsde", "dsm", "positional"),
    ("cifar10_ncsnpp_ve", "ncsnpp", "ve", "vesde", "dsm", "fourier"),
    ("cifar10_ddpmpp_edm", "ddpmpp", "edm", "vesde", "edm", "positional"),
    ("cifar10_ncsnpp_edm", "ncsnpp", "edm", "vesde", "edm", "fourier"),
])
def test_edm_recipe_hyper_parameters(name, arch, precond, sde, loss, embedding):
    c = load_config(EDM / f"{name}.py")
    m, t, o, s = c.model, c.training, c.optim, c.sampling
    assert (m.precond, t.sde, t.loss, m.embedding_type) == (precond, sde, loss, embedding)
    assert m.fir is (arch == "ncsnpp") and (m.progressive_input == "residual") is (arch == "ncsnpp")
    assert (m.nf, tuple(m.ch_mult), m.num_res_blocks, tuple(m.attn_resolutions)) == (128, (2, 2, 2), 4, (16,))
    assert (m.dropout, m.num_classes, c.data.centered, m.scale_by_sigma) == (0.13, 10, True, False)
    assert (t.batch_size, t.n_iters, t.reduce_mean) == (512, 390_625, False)  # 200 Mimg, summed loss
    assert (o.lr, o.warmup, o.grad_clip) == (1e-3, 19_531, -1.0)  # 10 Mimg ramp-up, no clipping
    assert m.ema_rate == pytest.approx(0.5 ** (512 / 500_000))  # half-life 0.5 Mimg
    assert (s.method, s.num_steps, s.rho, s.sigma_max) == ("edm_heun", 18, 7.0, 80.0)
    assert s.sigma_min == (0.02 if precond == "ve" else 0.002)
    if precond == "vp":
        assert (m.beta_min, m.beta_max, t.eps) == (0.1, 20.0, 1e-5)
    if precond == "ve":
        assert (m.sigma_min, m.sigma_max) == (0.02, 100.0)
    if precond == "edm":
        assert (m.sigma_data, m.sigma_min, m.sigma_max) == (0.5, 0.002, 80.0)
