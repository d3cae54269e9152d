"""The sigma-space samplers and the fixed-step ODE sampler run on a batch sharded over 4 devices.

A batch split along a `jax.sharding.Mesh` axis (NamedSharding, PartitionSpec("batch")) must give
the same samples as one device, to float tolerance, and come back sharded the same way (not
replicated: a replicated result means every device computed the whole batch). Fake CPU devices
need XLA_FLAGS before jax is imported, so the checks run in one subprocess, which reports each
sampler on its own line. The PC sampler and the adaptive ODE sampler are also run sharded in
test_pc.py and test_ode.py.
"""
import textwrap

import pytest

SIGMA_SPACE = ("edm_heun", "edm_heun_churn", "edm_heun_t_init", "ddim", "ddim_eta1", "dpm_solver_2m",
               "dpm_solver_3m")
ODE = ("ode_euler_denoise", "ode_heun", "likelihood")
# Each case costs two compilations in the subprocess: by default every sampler once, on both SDEs,
# with churn, per-example t_init, eta = 1, the multistep history and denoising; the deterministic
# Heun / DDIM / 2M variants of the same frames and the fixed-step Heun ODE run with -m slow.
SLOW = ("edm_heun", "ddim", "dpm_solver_2m", "ode_heun")

SHARDING_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import sde_lib
    from samplers.ddim import DDIMSampler
    from samplers.dpm_solver import DPMSolverPPSampler
    from samplers.edm_heun import EDMHeunSampler
    from samplers.likelihood import log_likelihood
    from samplers.ode import ODESampler

    assert jax.device_count() == 4, jax.devices()
    mixture = sde_lib.GaussianMixture(jnp.array([0.6, 0.4]), jnp.array([[-1.0, 0.5], [1.5, -1.0]]),
                                      jnp.array([[[0.3, 0.1], [0.1, 0.2]], [[0.2, 0.0], [0.0, 0.4]]]))
    batch = NamedSharding(Mesh(np.array(jax.devices()), ("batch",)), P("batch"))
    shape = (16, 2)
    vp, ve = sde_lib.VPSDE(), sde_lib.VESDE()
    cases = {  # name: (sampler, t_init per example or None)
        "edm_heun": (EDMHeunSampler(ve, num_steps=6), None),
        "edm_heun_churn": (EDMHeunSampler(vp, num_steps=6, S_churn=10.0), None),
        "edm_heun_t_init": (EDMHeunSampler(vp, num_steps=6), jnp.linspace(0.3, 0.9, shape[0])),
        "ddim": (DDIMSampler(vp, num_steps=8), None),
        "ddim_eta1": (DDIMSampler(ve, num_steps=8, eta=1.0), None),
        "dpm_solver_2m": (DPMSolverPPSampler(vp, num_steps=8, order=2), None),
        "dpm_solver_3m": (DPMSolverPPSampler(ve, num_steps=8, order=3), None),
        "ode_euler_denoise": (ODESampler(vp, "euler", num_steps=8, denoise=True), None),
        "ode_heun": (ODESampler(ve, "heun", num_steps=8), None),
    }
    def check(name, sampler, t_init):
        score_fn = mixture.score_fn(sampler.sde)
        run = jax.jit(lambda rng, x, t: sampler(rng, score_fn, shape, x_init=x, t_init=t))
        x_init = sampler.sde.prior_sampling(jax.random.key(0), shape)
        sharded_t = None if t_init is None else jax.device_put(t_init, batch)
        one, nfe_one = run(jax.random.key(1), x_init, t_init)
        four, nfe_four = run(jax.random.key(1), jax.device_put(x_init, batch), sharded_t)
        assert len(one.sharding.device_set) == 1, (name, one.sharding)
        assert four.sharding.is_equivalent_to(batch, four.ndim), (name, four.sharding)
        assert int(nfe_one) == int(nfe_four) > 0, (name, nfe_one, nfe_four)
        assert np.abs(np.asarray(four) - np.asarray(x_init)).max() > 0.1, name  # the sampler moved x
        np.testing.assert_allclose(np.asarray(four), np.asarray(one), rtol=1e-4, atol=1e-4, err_msg=name)

    def check_likelihood(name, _sampler, _t_init):
        sde = vp
        data = mixture.sample(jax.random.key(2), shape[0])
        run = jax.jit(lambda rng, x: log_likelihood(rng, sde, mixture.score_fn(sde), x, divergence="exact",
                                                   rtol=1e-4, atol=1e-4))
        one, four = run(jax.random.key(3), data), run(jax.random.key(3), jax.device_put(data, batch))
        assert four.z.sharding.is_equivalent_to(batch, 2), (name, four.z.sharding)
        assert four.logp.sharding.is_equivalent_to(batch, 1), (name, four.logp.sharding)
        assert int(one.nfe) == int(four.nfe) > 0, (name, one.nfe, four.nfe)
        np.testing.assert_allclose(np.asarray(four.logp), np.asarray(one.logp), rtol=1e-4, atol=1e-4,
                                   err_msg=name)

    checks = [(name, check, sampler, t_init) for name, (sampler, t_init) in cases.items()]
    for name, run_check, sampler, t_init in checks + [("likelihood", check_likelihood, None, None)]:
        if name not in NAMES:
            continue
        try:
            run_check(name, sampler, t_init)
            print("OK", name, flush=True)
        except AssertionError as error:
            print("FAIL", name, repr(error).replace(chr(10), " "), flush=True)
""")


def _run(run_on_four_devices, names) -> dict[str, str]:
    """sampler name -> "OK" or the failed check, from one 4-device subprocess running `names`."""
    out = run_on_four_devices(f"NAMES = {list(names)!r}\n" + SHARDING_SCRIPT, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    results = {}
    for line in out.stdout.splitlines():
        status, name = line.split(" ", 2)[:2]
        results[name] = status if status == "OK" else line
    return results


@pytest.fixture(scope="module")
def default_results(run_on_four_devices) -> dict[str, str]:
    return _run(run_on_four_devices, [n for n in (*SIGMA_SPACE, *ODE) if n not in SLOW])


@pytest.fixture(scope="module")
def slow_results(run_on_four_devices) -> dict[str, str]:
    return _run(run_on_four_devices, SLOW)


def _check(request, name):
    results = request.getfixturevalue("slow_results" if name in SLOW else "default_results")
    assert results.get(name) == "OK", results.get(name)


def _by_group(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


@pytest.mark.parametrize("name", _by_group(SIGMA_SPACE))
def test_sigma_space_samplers_keep_batch_sharded_and_match_one_device(request, name):
    _check(request, name)


@pytest.mark.parametrize("name", _by_group(ODE))
def test_fixed_step_ode_sampler_and_likelihood_keep_batch_sharded_and_match_one_device(request, name):
    _check(request, name)
