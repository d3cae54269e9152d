"""2-D toy data (`toy2d/gmm8`: 8 Gaussians on a circle, exact score known in closed form) with a
residual MLP and the continuous VP SDE. Override `data.dataset=toy2d/checkerboard` or
`toy2d/moons` for the other distributions."""
from configs import families
from configs.default import get_default_config


def get_config():
    config = families.vp(get_default_config())
    config.training.batch_size = 256
    config.training.n_iters = 5_000
    config.training.snapshot_freq = 1_000
    config.training.snapshot_freq_for_preemption = 500
    config.training.eval_freq = 500
    config.training.reduce_mean = True
    config.sampling.batch_size = 1000
    config.eval.batch_size = 500
    config.eval.num_samples = 2000

    config.data.dataset = "toy2d/gmm8"
    config.data.centered = True  # the points are zero-centred reals: no [0, 1] -> [-1, 1] shift
    config.data.image_size = 1  # unused by point data
    config.data.num_channels = 2

    model = config.model
    model.name = "mlp"
    model.hidden_dims = (128, 128, 128)
    model.nf = 64
    model.dropout = 0.0
    model.ema_rate = 0.999
    config.optim.lr = 1e-3
    config.optim.warmup = 100
    return config
