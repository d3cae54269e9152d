"""Shared by the learning tests: train the toy2d MLP on `toy2d/gmm8` through the framework's own
wiring (config -> builders -> make_objective -> make_train_step), and measure it against the exact
mixture (`sde_lib.GaussianMixture`). Run as a script to print the measurements the bounds of
`test_learning.py` come from: `PYTHONPATH=. python tests/training/learning_toy.py`.
"""
from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp

import models
import samplers
import sde_lib
from configs import builders, load_config
from samplers.likelihood import log_likelihood
from samplers.sample_distance import sliced_wasserstein
from training.datasets.toy2d import GMM_STD, gmm8_parameters
from training.state import create_train_state
from training.train_step import make_objective, make_train_step

CONFIG = pathlib.Path(__file__).resolve().parents[2] / "configs" / "toy2d.py"
TIMES = (0.1, 0.5, 1.0)
# Overrides of configs/toy2d.py per case. VE and EDM use a noise range fitted to the data (the
# components lie on a circle of radius 2, so sigma_max = 5 covers the largest distance).
# EMA warm-up: a 2000-step run would otherwise keep 0.999^2000 = 14% of the random initialisation.
COMMON = ["model.ema_warmup=True"]
CASES = {
    "vp": [],
    "subvp": ["training.sde=subvpsde"],
    "ve": ["training.sde=vesde", "model.sigma_min=0.01", "model.sigma_max=5.0", "model.scale_by_sigma=True",
           "model.embedding_type=fourier", "model.fourier_scale=1.0"],
    "edm": ["training.sde=vesde", "model.sigma_min=0.01", "model.sigma_max=5.0", "model.precond=edm",
            "training.loss=edm", "model.sigma_data=1.4"],
}


def mixture() -> sde_lib.GaussianMixture:
    weights, means, covs = gmm8_parameters()
    return sde_lib.GaussianMixture(jnp.asarray(weights, jnp.float32), jnp.asarray(means, jnp.float32),
                                   jnp.asarray(covs, jnp.float32))


def draw(key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """n exact gmm8 points `[n, 2]` and their components `[n]` (the class labels)."""
    _, means, _ = gmm8_parameters()
    k_key, z_key = jax.random.split(key)
    labels = jax.random.randint(k_key, (n,), 0, len(means))
    return jnp.asarray(means, jnp.float32)[labels] + GMM_STD * jax.random.normal(z_key, (n, 2)), labels


@dataclasses.dataclass
class Trained:
    config: object
    sde: sde_lib.SDE
    model: object
    precond: object
    state: object
    init_params: object

    def score_fn(self, params=None, labels=None) -> sde_lib.ScoreFn:
        params = self.state.ema_params if params is None else params
        return models.get_score_fn(self.sde, self.model, params, train=False, continuous=True,
                                   precond=self.precond, labels=labels)


def train(case: str, *, steps: int = 2000, overrides: tuple[str, ...] = (), data_scale=None,
          seed: int = 0) -> Trained:
    """The toy2d MLP trained `steps` steps on exact gmm8 batches; `data_scale(x)` transforms the
    batches (to simulate a data-scaling bug)."""
    config = load_config(CONFIG, [*COMMON, *CASES[case], *overrides])
    sde = builders.build_sde(config)
    model = models.build_model(config)
    precond = builders.build_precond(config)
    optimizer = builders.build_optimizer(config)
    objective = make_objective(model, builders.build_loss(config, sde), sde, continuous=True, precond=precond,
                               label_dropout=config.training.label_dropout)
    step = make_train_step(objective, optimizer, ema_rate=config.model.ema_rate, ema_warmup=config.model.ema_warmup)
    init_key, data_key = jax.random.split(jax.random.PRNGKey(seed))
    state = create_train_state(init_key, lambda k: models.init_params(k, model, (1, 2)), optimizer)
    init_params = state.params
    batch = config.training.batch_size

    def body(state, key):
        x, y = draw(key, batch)
        return step(state, {"image": x if data_scale is None else data_scale(x), "label": y})

    state, _ = jax.jit(lambda s, keys: jax.lax.scan(body, s, keys))(state, jax.random.split(data_key, steps))
    return Trained(config, sde, model, precond, state, init_params)


def score_reference(sde: sde_lib.SDE, t: float, *, n: int = 4000) -> tuple[jax.Array, jax.Array]:
    """x_t ~ p_t `[n, 2]` (exact samples of the mixture perturbed to t) and the exact score there."""
    x = mixture().sample(jax.random.PRNGKey(1), n, t, sde)
    return x, mixture().score(x, jnp.full((n,), t), sde)


def relative_score_error(sde: sde_lib.SDE, score_fn: sde_lib.ScoreFn, t: float, *, n: int = 4000,
                         reference: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
    """sqrt(E|s - s*|^2 / E|s*|^2) over x_t ~ p_t; `reference` is `score_reference(sde, t)`."""
    x, exact = score_reference(sde, t, n=n) if reference is None else reference
    return jnp.sqrt(jnp.sum((score_fn(x, jnp.full((x.shape[0],), t)) - exact) ** 2) / jnp.sum(exact**2))


def sample(sde: sde_lib.SDE, score_fn: sde_lib.ScoreFn, n: int, key) -> jax.Array:
    """n samples by EDM's Heun sampler (deterministic, 35 score evaluations)."""
    return samplers.build_sampler("edm_heun", sde, num_steps=18)(key, score_fn, (n, 2))[0]


def sample_distance(sde: sde_lib.SDE, score_fn: sde_lib.ScoreFn, exact: jax.Array) -> jax.Array:
    """Sliced W2 between model samples and the exact gmm8 samples `exact: [n, 2]` (inf if any
    sample is not finite)."""
    x = sample(sde, score_fn, exact.shape[0], jax.random.PRNGKey(2))
    distance = sliced_wasserstein(jax.random.PRNGKey(3), x, exact)
    return jnp.where(jnp.all(jnp.isfinite(x)), distance, jnp.inf)


def likelihood_gap(sde: sde_lib.SDE, score_fn: sde_lib.ScoreFn, x: jax.Array, exact_logp: jax.Array
                   ) -> tuple[jax.Array, jax.Array]:
    """Mean |log p_model(x) - log p(x)| (nats) over held-out points `x: [n, 2]` by the PF ODE (exact
    divergence), and whether the solve finished with finite values."""
    out = log_likelihood(jax.random.PRNGKey(0), sde, score_fn, x, divergence="exact", rtol=1e-4, atol=1e-4,
                         eps=1e-3)
    return jnp.mean(jnp.abs(out.logp - exact_logp)), jnp.all(out.solved) & jnp.all(jnp.isfinite(out.logp))


def make_measure(trained: Trained, score_fn_of=None, times: tuple[float, ...] = TIMES):
    """Jitted `measure(params) -> dict` of the three learning metrics, the score error at `times`;
    parameters are traced, so the trained, raw and initial parameters share one compilation.
    `score_fn_of(params)` replaces the model's score function (to break its wiring).

    The exact references are computed once, outside the measured program: the mixture score's
    batched solve inside it (jaxlib's parallel batched LAPACK) has deadlocked on a loaded CPU."""
    score_fn_of = score_fn_of or (lambda params: trained.score_fn(params))
    held_out, _ = draw(jax.random.PRNGKey(5), 256)
    references = jax.block_until_ready({
        "scores": {t: score_reference(trained.sde, t) for t in times},
        "samples": mixture().sample(jax.random.PRNGKey(4), 10_000),
        "held_out": held_out, "logp": mixture().log_prob(held_out)})

    @jax.jit
    def measure(params, refs):
        score_fn = score_fn_of(params)
        record = {f"score_error_t{t:g}": relative_score_error(trained.sde, score_fn, t, reference=refs["scores"][t])
                  for t in times}
        record["sliced_w2"] = sample_distance(trained.sde, score_fn, refs["samples"])
        record["loglik_gap"], record["loglik_ok"] = likelihood_gap(trained.sde, score_fn, refs["held_out"],
                                                                   refs["logp"])
        return record

    return lambda params: {k: float(v) if k != "loglik_ok" else bool(v)
                           for k, v in measure(params, references).items()}


def wrong_noise_labels(trained: Trained):
    """The score with the network given the noise level sigma(t) instead of its label (999 t for
    VP, c_noise under preconditioning): a mixed-up noise-label convention."""
    def score_fn_of(params):
        net = models.get_model_fn(trained.model, params, train=False)
        if trained.precond is not None:
            denoiser = trained.precond.denoiser(lambda x, c_noise: net(x, jnp.exp(4.0 * c_noise)))
            return sde_lib.score_from_denoiser(trained.sde, denoiser)
        return sde_lib.score_from_eps(trained.sde, lambda x, t: net(x, trained.sde.marginal_std(t)))

    return score_fn_of


def wrong_sigma_data(trained: Trained, sigma_data: float):
    """The score with the trained EDM network under the preconditioning of another sigma_data:
    c_skip, c_out and c_in all wrong (a wrong-coefficient wiring)."""
    precond = dataclasses.replace(trained.precond, sigma_data=sigma_data)
    return lambda params: models.get_score_fn(trained.sde, trained.model, params, train=False, continuous=True,
                                              precond=precond)


if __name__ == "__main__":
    import sys
    import time

    for case in sys.argv[1:] or CASES:
        start = time.time()
        trained = train(case)
        measure = make_measure(trained)
        print(case, "trained", round(time.time() - start, 1), "s", measure(trained.state.ema_params), flush=True)
        print(case, "raw params", measure(trained.state.params), flush=True)
        if case in ("vp", "edm"):
            print(case, "wrong noise labels", make_measure(trained, wrong_noise_labels(trained))(
                trained.state.ema_params), flush=True)
            print(case, "untrained", measure(trained.init_params), flush=True)
        if case == "edm":
            for sigma_data in (0.5, 2.5):
                print(case, "sigma_data", sigma_data, make_measure(trained, wrong_sigma_data(trained, sigma_data))(
                    trained.state.ema_params), flush=True)
        if case == "vp":
            twice = train(case, data_scale=lambda x: 2.0 * x - 1.0)
            print(case, "data scaled twice", make_measure(twice)(twice.state.ema_params), flush=True)
