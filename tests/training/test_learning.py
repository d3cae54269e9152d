"""Training provably learns: the toy2d MLP, trained through the framework's own wiring (config ->
builders -> make_objective -> make_train_step, 2000 steps, EMA with warm-up) on exact `toy2d/gmm8`
batches, ends up close to the exact score, samples and likelihood of the mixture
(`sde_lib.GaussianMixture`) under VP, sub-VP, VE and EDM preconditioning.

Bounds come from `python tests/training/learning_toy.py vp subvp ve edm` (shared 2-core CPU) with
margin. Measured: relative score error at t = 0.1 / 0.5 / 1, sliced W2 of 10k samples (EDM-Heun,
35 NFE) against 10k exact ones, mean |log p_model - log p| of 256 held-out points (PF ODE, exact
divergence) in nats; every likelihood solve finished:

| case | score t=0.1 / 0.5 / 1 | sliced W2 | log-lik gap |
|---|---|---|---|
| VP, EMA | 0.59 / 0.013 / 0.015 | 0.17 | 1.37 |
| sub-VP, EMA | 0.71 / 0.018 / 0.019 | 0.18 | 1.42 |
| VE, EMA | 0.73 / 0.70 / 0.067 | 0.17 | 1.41 |
| broken: VP sampled with the raw (non-EMA) parameters | 0.59 / 0.061 / 0.070 | 0.35 | 1.83 |
| broken: sub-VP, raw parameters | 0.76 / 0.075 / 0.059 | 0.34 | 1.86 |
| broken: VP network given sigma(t) instead of its label 999 t | 0.66 / 1.73 / 1.73 | 0.43 | 37.7 |
| broken: VP untrained (EMA never updated) | 1.06 / 1.06 / 1.08 | 420 | 12.1 |

EDM (`learning_toy.py edm`, trained in 39-154 s on the loaded machine): score error at t = 0.26 /
0.5 / 0.63 / 1 (sigma = 0.05 / 0.22 / 0.5 / 5) 0.092 / 0.225 / 0.083 / 0.017, sliced W2 0.080,
log-lik gap 0.33; with the raw (non-EMA) parameters 0.288 at t = 0.5 and 0.038 at t = 1, sliced W2
0.102, log-lik gap 0.80 (fails the gap and t = 1 bounds). The wrong-coefficient checks (the
trained network under the preconditioning of sigma_data = 0.5 or 2.5, wrong noise labels) and the
VP network trained on data scaled twice (x -> 2x - 1 applied to batches already in the model's
range) fail the bounds (asserted, not printed: measuring them one by one hung in jaxlib's batched
LAPACK, the exact mixture score's batched solve inside the measured program, on the loaded
machine; the references are now computed outside it). Untrained EDM network: sliced W2 0.59.

Conditional (VP, `model.num_classes=8` = the component index, `training.label_dropout=0.2`):
sliced W2 of 2000 samples of class k against 2000 exact samples of component k: 0.039, 0.032,
0.031 for k = 0, 3, 6 (against the neighbouring component, 1.53 away: about 1.08); the null
class's score against the exact mixture score: relative error 0.017 at t = 0.5, 0.024 at t = 1.

The small-noise score (t = 0.1 for VP / sub-VP, sigma <= 0.22 for VE) is the hardest part for a
2000-step MLP and its bounds are loose; the samples, the likelihood and the larger noise levels
separate the correct wiring from the broken ones above.

The default run trains the VP case; sub-VP, VE, EDM, data-scaled-twice and the conditional cases
run with `-m slow` (each trains its own model: minutes on 2 CPU cores).
"""
import jax
import jax.numpy as jnp
import pytest
from learning_toy import (
    make_measure,
    mixture,
    relative_score_error,
    sample,
    train,
    wrong_noise_labels,
    wrong_sigma_data,
)

from samplers.sample_distance import sliced_wasserstein
from sde_lib import gaussian

# EDM: VE noise levels with EDM's preconditioning and loss (sigma_data = 1.4, the data's std). Its
# score error is read at t = 0.26 / 0.5 / 0.63 / 1, i.e. sigma = 0.05 / 0.22 / 0.5 / 5 (the relative
# score error is also the relative error of the denoiser's residual D(x, sigma) - x).
EDM_BOUNDS = {"score": {0.26: 0.2, 0.5: 0.4, 0.63: 0.17, 1.0: 0.03}, "sliced_w2": 0.15, "loglik_gap": 0.6}
WRONG_SIGMA_DATA = (0.5, 2.5)
BOUNDS = {
    "vp": {"score": {0.1: 0.8, 0.5: 0.03, 1.0: 0.03}, "sliced_w2": 0.25, "loglik_gap": 2.0},
    "subvp": {"score": {0.1: 0.9, 0.5: 0.04, 1.0: 0.04}, "sliced_w2": 0.25, "loglik_gap": 2.0},
    "ve": {"score": {0.1: 0.9, 0.5: 0.85, 1.0: 0.12}, "sliced_w2": 0.25, "loglik_gap": 2.0},
    "edm": EDM_BOUNDS,
}


def _within(case: str, got: dict) -> bool:
    bound = BOUNDS[case]
    return (all(got[f"score_error_t{t:g}"] < b for t, b in bound["score"].items()) and got["loglik_ok"]
            and got["sliced_w2"] < bound["sliced_w2"] and got["loglik_gap"] < bound["loglik_gap"])


def _measure(case: str, model, score_fn_of=None):
    return make_measure(model, score_fn_of, times=tuple(BOUNDS[case]["score"]))


def _measure_with_a_label_switch(case: str, model):
    """`measure(params, wrong_labels=False)`: the learning metrics of the model's score or, with
    `wrong_labels`, of `wrong_noise_labels(model)`. The switch is a traced flag (`lax.cond`, one
    branch runs), so the trained, raw, untrained and mislabelled measurements share one
    compilation of the measured program (sampler, likelihood solve), the bulk of their cost."""
    wrong_of = wrong_noise_labels(model)

    def score_fn_of(args):
        params, wrong = args
        right_fn, wrong_fn = model.score_fn(params), wrong_of(params)
        return lambda x, t: jax.lax.cond(wrong, wrong_fn, right_fn, x, t)

    measure = _measure(case, model, score_fn_of)
    return lambda params, wrong_labels=False: measure((params, jnp.asarray(wrong_labels)))


@pytest.fixture(scope="module", params=["vp", *(pytest.param(case, marks=pytest.mark.slow)
                                                for case in ("subvp", "ve", "edm"))])
def trained(request):
    model = train(request.param)
    return request.param, model, _measure_with_a_label_switch(request.param, model)


def test_trained_mlp_matches_the_exact_score_samples_and_likelihood(trained):
    case, model, measure = trained
    got = measure(model.state.ema_params)
    assert got["loglik_ok"], f"{case}: a likelihood solve diverged or hit max_steps"
    assert _within(case, got), (case, got)


def test_sampling_with_the_raw_parameters_fails_the_bounds(trained):
    case, model, measure = trained
    if case == "ve":
        pytest.skip("measured for VP, sub-VP and EDM")
    assert not _within(case, measure(model.state.params))


def test_wrong_noise_labels_and_the_untrained_network_fail_the_bounds(trained):
    case, model, measure = trained
    if case not in ("vp", "edm"):
        pytest.skip("measured for VP and EDM")
    assert not _within(case, measure(model.state.ema_params, wrong_labels=True))
    # EDM's c_skip keeps an untrained network's samples near the data's scale (sliced W2 0.59)
    untrained = measure(model.init_params)
    assert not _within(case, untrained) and untrained["sliced_w2"] > 3 * BOUNDS[case]["sliced_w2"]


def test_edm_preconditioning_with_a_wrong_sigma_data_fails_the_bounds(trained):
    case, model, _ = trained
    if case != "edm":
        pytest.skip("EDM preconditioning only")
    for sigma_data in WRONG_SIGMA_DATA:
        assert not _within(case, _measure(case, model, wrong_sigma_data(model, sigma_data))(model.state.ema_params))


@pytest.mark.slow
def test_data_scaled_twice_fails_the_bounds():
    """The data scaler applied to batches that are already in the model's range (x -> 2x - 1 once
    more): the network learns another distribution, which the bounds must catch."""
    model = train("vp", data_scale=lambda x: 2.0 * x - 1.0)
    got = _measure("vp", model)(model.state.ema_params)
    assert not _within("vp", got) and got["sliced_w2"] > 2 * BOUNDS["vp"]["sliced_w2"], got


@pytest.fixture(scope="module")
def conditional():
    return train("vp", overrides=("model.num_classes=8", "training.label_dropout=0.2"))


@pytest.mark.slow
def test_conditional_samples_match_their_component_and_not_the_next(conditional):
    means, covs = mixture().means, mixture().covs
    for k in (0, 3, 6):
        x = sample(conditional.sde, conditional.score_fn(labels=k), 2000, jax.random.PRNGKey(k))
        own = gaussian(means[k], covs[k]).sample(jax.random.PRNGKey(10 + k), 2000)
        other = gaussian(means[(k + 1) % 8], covs[k]).sample(jax.random.PRNGKey(10 + k), 2000)
        assert float(sliced_wasserstein(jax.random.PRNGKey(20), x, own)) < 0.08, k
        assert float(sliced_wasserstein(jax.random.PRNGKey(20), x, other)) > 0.8, k


@pytest.mark.slow
def test_null_class_of_label_dropout_learns_the_mixture_score(conditional):
    for t, bound in ((0.5, 0.04), (1.0, 0.05)):
        assert float(relative_score_error(conditional.sde, conditional.score_fn(), t)) < bound, t
