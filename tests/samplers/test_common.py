"""The shared calling convention (`samplers.common`): weights and labels are traced inputs, one jit for
every sampler, and sample i depends only on (key, i)."""
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

import models
import sde_lib
from samplers import common, edit, encode, inpainting
from samplers.ald import AnnealedLangevinSampler
from samplers.ddim import DDIMSampler
from samplers.dpm_solver import DPMSolverPPSampler
from samplers.dpm_solver_sde import DPMSolverSDESampler
from samplers.edm_heun import EDMHeunSampler
from samplers.likelihood import log_likelihood
from samplers.lms import LMSSampler
from samplers.ode import ODESampler
from samplers.pc import PCSampler
from samplers.unipc import UniPCSampler

VP = sde_lib.VPSDE(N=20)
GAUSS = sde_lib.gaussian(jnp.array([1.0, -2.0]), jnp.array([[1.5, 0.4], [0.4, 0.3]]))
SAMPLERS = {  # few steps: these tests are about keys and compilation, not accuracy
    "pc_em_ald": PCSampler(VP, "euler_maruyama", "ald", num_steps=25),
    "pc_reverse_diffusion": PCSampler(VP, "reverse_diffusion", "none", num_steps=30),
    "ode_euler": ODESampler(VP, "euler", num_steps=4),
    "ode_adaptive": ODESampler(VP, rtol=1e-3, atol=1e-3),
    "ald": AnnealedLangevinSampler(VP, num_scales=4, n_steps_each=2),
    "edm_heun_churn": EDMHeunSampler(VP, num_steps=4, S_churn=10.0),
    "ddim_eta1": DDIMSampler(VP, num_steps=4, eta=1.0),
    "dpm_solver": DPMSolverPPSampler(VP, num_steps=4),
    "lms": LMSSampler(VP, num_steps=4),
    "unipc": UniPCSampler(VP, num_steps=4),
    "dpm_solver_sde": DPMSolverSDESampler(VP, num_steps=4),
}
TINY_MLP = models.MODELS.get("mlp")(hidden_dims=(8,), nf=4)
SCORE = GAUSS.score_fn(VP)  # one callable for every test: the same static score reuses the compiled samplers


def _network_score(params, model=TINY_MLP):
    return models.get_score_fn(VP, model, params, train=False, continuous=True)


def _params(seed, model=TINY_MLP):
    return models.init_params(jax.random.key(seed), model, (1, 2))


def _compilations():
    return common._per_example._cache_size()


# The weights reach every sampler through the one jit of `samplers.common`: by default a stochastic
# chain, a churned sigma-space solver, an adaptive solve and the likelihood; every sampler with -m slow.
NETWORK_DEFAULT = ("pc_em_ald", "edm_heun_churn", "ode_adaptive", "likelihood")


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in NETWORK_DEFAULT else pytest.mark.slow)
                                  for n in (*SAMPLERS, "likelihood")])
def test_new_network_weights_of_the_same_shapes_do_not_recompile(name):
    def run(params):
        score_fn = _network_score(params)
        if name == "likelihood":
            return log_likelihood(jax.random.key(0), VP, score_fn, jnp.ones((4, 2)), rtol=1e-3, atol=1e-3).logp
        return SAMPLERS[name](jax.random.key(0), score_fn, (4, 2))[0]

    first = run(_params(0))
    compiled = _compilations()
    second = run(_params(1))
    assert _compilations() == compiled
    assert not np.allclose(first, second)  # the new weights were used, not the old constants


def test_lowered_program_does_not_grow_with_the_parameter_count(monkeypatch):
    calls = []
    traced = common._per_example
    monkeypatch.setattr(common, "_per_example", lambda *args: calls.append(args) or traced(*args))
    sizes = {}
    for width in (8, 512):
        model = models.MODELS.get("mlp")(hidden_dims=(width, width), nf=4)
        params = _params(0, model)
        SAMPLERS["ddim_eta1"](jax.random.key(0), _network_score(params, model), (4, 2))
        sizes[width] = (len(traced.lower(*calls[-1]).as_text()), sum(p.size for p in jax.tree.leaves(params)))
    (small, small_params), (large, large_params) = sizes[8], sizes[512]
    assert large_params > 2000 * small_params / 10  # ~250k vs ~100 weights
    assert large < 1.05 * small, sizes  # the weights are arguments, not constants in the program


# By default each sampler family that draws noise per step (its per-example keys are its own code;
# the PC chain once, with a corrector), the adaptive ODE and one fixed-step deterministic solver (the
# other deterministic ones differ from it only after the shared per-example start); all with -m slow.
BATCH_SLOW = ("pc_reverse_diffusion", "dpm_solver", "lms", "unipc")


@pytest.mark.parametrize("batches", [(3, 8), pytest.param((8, 16), marks=pytest.mark.slow)], ids=["3_8", "8_16"])
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in BATCH_SLOW else n
                                  for n in SAMPLERS])
def test_sample_i_is_the_same_in_batches_of_3_8_and_16(name, batches):
    sampler = SAMPLERS[name]
    # The adaptive ODE in float64: in float32 its step sizes follow rounding that XLA compiles per batch
    # shape (next test), so only float64 shows per-example identity at 1e-5 (bit for bit, in fact).
    with jax.enable_x64(name == "ode_adaptive"):
        small, large = (np.asarray(sampler(jax.random.key(7), SCORE, (batch, 2))[0]) for batch in batches)
        # global indices: examples 5..7 drawn alone are examples 5..7 of the batch
        alone = np.asarray(sampler(jax.random.key(7), SCORE, (3, 2), indices=jnp.arange(5, 8))[0])
    # atol 1e-5: the batch size changes only XLA's vectorisation, so float32 rounding (a few ulps, grown
    # by a churned chain to ~3e-6) may differ; a key or batch mix-up differs by O(1).
    np.testing.assert_allclose(small, large[:batches[0]], rtol=1e-5, atol=1e-5)
    assert np.abs(large[:3] - large[3:6]).min() > 1e-4  # different examples differ
    np.testing.assert_allclose(alone, large[5:8], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_adaptive_ode_in_float32_is_the_same_in_batches_of_3_and_8_within_its_tolerance():
    """A float32 error estimate of the first, short steps sits at rounding level (~1e-7, the float64
    estimate is as small), and one diffrax Tsit5 step rounds differently at batch 1, 3 and 8 (XLA
    compiles each batch shape on its own): the PID factor err^(-1/5) turns that into different step
    sizes, so example i moves within the solver tolerance with its batch (measured: up to 5 rtol)."""
    rtol = SAMPLERS["ode_adaptive"].rtol
    small, large = (np.asarray(SAMPLERS["ode_adaptive"](jax.random.key(7), SCORE, (batch, 2))[0]) for batch in (3, 8))
    np.testing.assert_allclose(small, large[:3], rtol=0, atol=20 * rtol * (1 + np.abs(large[:3]).max()))


@pytest.mark.slow
def test_applications_draw_example_i_from_its_own_key():
    score_fn, key = SCORE, jax.random.key(3)
    data = GAUSS.sample(jax.random.key(1), 8)
    mask = jnp.array([1.0, 0.0])
    runs = {
        "likelihood": lambda x: log_likelihood(key, VP, score_fn, x, rtol=1e-3, atol=1e-3).logp,
        "inpaint": lambda x: inpainting.inpaint(key, score_fn, x, mask, SAMPLERS["pc_em_ald"])[0],
        "sdedit": lambda x: edit.sdedit(key, SAMPLERS["ddim_eta1"], score_fn, x, 0.5, mask=mask)[0],
        "encode": lambda x: encode.FlowCodec(VP, rtol=1e-3, atol=1e-3).encode(score_fn, x)[0],
    }
    for name, run in runs.items():
        np.testing.assert_allclose(np.asarray(run(data[:3])), np.asarray(run(data))[:3], rtol=1e-5, atol=1e-5,
                                   err_msg=name)


def _label_score(means, x, t, labels):
    """Exact score of N(means[label], I) under VP, per example."""
    mean = VP.alpha(t)[:, None] * means[labels]
    return -(x - mean)  # VP keeps unit variance: alpha^2 + s^2 = 1


def test_per_example_labels_condition_each_sample_and_new_labels_do_not_recompile():
    means = jnp.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    sampler = DPMSolverPPSampler(VP, num_steps=10)
    labels = jnp.arange(600) % 3
    samples, _ = sampler(jax.random.key(0), Partial(_label_score, means, labels=labels), (600, 2))
    compiled = _compilations()
    for k in range(3):
        np.testing.assert_allclose(np.asarray(samples[labels == k]).mean(0), means[k], atol=0.2)
    flipped, _ = sampler(jax.random.key(0), Partial(_label_score, means, labels=2 - labels), (600, 2))
    assert _compilations() == compiled
    np.testing.assert_allclose(np.asarray(flipped[labels == 0]).mean(0), means[2], atol=0.2)
    with pytest.raises(ValueError, match="leading batch axis of 600"):
        sampler(jax.random.key(0), Partial(_label_score, means, labels=labels[:5]), (600, 2))


def test_start_semantics_are_shared_by_every_sampler():
    for name, sampler in SAMPLERS.items():
        with pytest.raises(ValueError, match="t_init was given without x_init"):
            sampler(jax.random.key(0), SCORE, (3, 2), t_init=0.5)
        with pytest.raises(ValueError, match="indices must be 3 integers"):
            sampler(jax.random.key(0), SCORE, (3, 2), indices=jnp.arange(4))
        x, nfe = sampler(jax.random.key(0), SCORE, (3, 2))  # compiled by the batch test already
        assert type(nfe) is int and x.dtype == jnp.float32, name


FOUR_DEVICES = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import sde_lib
    from samplers.edm_heun import EDMHeunSampler
    from samplers.ode import ODESampler
    from samplers.pc import PCSampler
    vp = sde_lib.VPSDE(N=20)
    score_fn = sde_lib.gaussian(jnp.array([1.0, -2.0]), jnp.eye(2)).score_fn(vp)
    batch = NamedSharding(Mesh(np.array(jax.devices()), ("batch",)), P("batch"))
    # a stochastic chain, a churned sigma-space solver (the frame of all six) and an adaptive solve
    for name, sampler in {"pc": PCSampler(vp, "euler_maruyama", "ald", num_steps=25),
                          "edm_heun_churn": EDMHeunSampler(vp, num_steps=4, S_churn=10.0),
                          "ode_adaptive": ODESampler(vp, rtol=1e-3, atol=1e-3)}.items():
        # the adaptive solve in float64: in float32 its steps follow per-batch-shape rounding (batch tests above)
        with jax.enable_x64(name == "ode_adaptive"):
            one, _ = sampler(jax.random.key(5), score_fn, (6, 2))
            # 6 examples padded to 8 for 4 devices: the padding (indices 6, 7) does not move examples 0..5
            indices = jax.device_put(jnp.arange(8), batch)
            four, _ = sampler(jax.random.key(5), score_fn, (8, 2), indices=indices)
        assert four.sharding.is_equivalent_to(batch, 2), (name, four.sharding)
        np.testing.assert_allclose(np.asarray(four)[:6], np.asarray(one), rtol=1e-5, atol=1e-6, err_msg=name)
        print("OK", name, flush=True)
""")


def test_sample_i_is_the_same_on_one_and_four_devices_with_padding(run_on_four_devices):
    out = run_on_four_devices(FOUR_DEVICES, timeout=300)
    assert out.returncode == 0 and out.stdout.count("OK") == 3, out.stdout + out.stderr[-3000:]


@pytest.mark.parametrize("name", ["pc_reverse_diffusion", "edm_heun_churn", "dpm_solver", "unipc",
                                  *(pytest.param(n, marks=pytest.mark.slow) for n in ("ddim_eta1", "lms",
                                                                                      "dpm_solver_sde"))])
def test_trajectory_holds_every_kth_state_and_ends_at_the_sample(name):
    sampler = SAMPLERS[name]
    samples, nfe = sampler(jax.random.key(2), SCORE, (3, 2))
    again, nfe_again, states = sampler(jax.random.key(2), SCORE, (3, 2), trajectory_every=2)
    steps = sampler.num_steps
    assert states.shape == (steps // 2, 3, 2) and nfe_again == nfe
    np.testing.assert_allclose(np.asarray(again), np.asarray(samples), rtol=1e-6, atol=1e-6)
    if steps % 2 == 0:  # the last state is the sample (x / alpha(0) = x)
        np.testing.assert_allclose(np.asarray(states[-1]), np.asarray(samples), rtol=1e-6, atol=1e-6)
    assert np.abs(np.asarray(states[0] - states[-1])).max() > 1e-2  # distinct steps (0.09 for 4-step DPM-Solver)
