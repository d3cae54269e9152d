"""Mixed precision through the config (`model.compute_dtype = "bfloat16"`): float32 parameters,
bfloat16 convolutions and matmuls, a float32 score, and results close to the float32 network.

Each numerical case is one jitted function, compiled with XLA's backend optimisation off
(compilation dominates on a CPU), that evaluates both dtypes; the gradient comparison is slow.
The dtype of every convolution and matmul is checked on the traced program of each network.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
import sde_lib
from configs import get_default_config, validate_config
from configs.validate import ConfigError

_FAST_COMPILE = {"xla_backend_optimization_level": 0}


def tiny_ncsnpp_ve():
    """NCSN++ as trained under the VE SDE (FIR, BigGAN blocks, residual input pyramid,
    Fourier features of sigma, sigma scaling), at 8x8x1."""
    config = get_default_config()
    m = config.model
    m.nf, m.ch_mult, m.num_res_blocks, m.attn_resolutions = 16, (1, 2), 1, (4,)
    m.fir, m.progressive_input, m.embedding_type, m.scale_by_sigma = True, "residual", "fourier", True
    config.training.sde = "vesde"
    return config, sde_lib.VESDE(), True


def tiny_ddpm():
    """DDPM (discrete VP, labels = step index) at 8x8x1."""
    config = get_default_config()
    m = config.model
    m.name, m.nf, m.ch_mult, m.num_res_blocks, m.attn_resolutions = "ddpm", 32, (1, 2), 1, (4,)
    config.training.sde, config.training.loss, config.training.continuous = "vpsde", "ddpm", False
    config.data.centered = True
    return config, sde_lib.VPSDE(), False


CASES = {"ncsnpp_ve": tiny_ncsnpp_ve, "ddpm": tiny_ddpm}


def perturbed(params, key):
    """Parameters plus noise, so the zero-initialised output layers do not make the outputs 0."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [p + 0.05 * jax.random.normal(k, p.shape, p.dtype)
                                     for p, k in zip(leaves, keys, strict=True)])


def relative_error(a, b) -> float:
    return float(np.linalg.norm(np.ravel(a) - np.ravel(b)) / np.linalg.norm(np.ravel(b)))


def build_pair(config):
    """The float32 and bfloat16 networks of one config."""
    validate_config(config)
    model32 = models.build_model(config)
    config.model.compute_dtype = "bfloat16"
    validate_config(config)
    return model32, models.build_model(config)


def evaluate_both(name, with_grads):
    """Scores (and parameter gradients of a loss of them) of the float32 and bfloat16 networks
    of case `name`, at the same perturbed float32 parameters; also the bf16 network's params."""
    config, sde, continuous = CASES[name]()
    model32, model16 = build_pair(config)
    assert model16.dtype == jnp.bfloat16 and model32.dtype == jnp.float32
    shape = (2, 8, 8, 1)
    x = jax.random.normal(jax.random.key(1), shape)
    t = jnp.array([0.3, 0.8])

    def run(key, x):
        k_init, k_noise = jax.random.split(key)
        params16 = models.init_params(k_init, model16, shape)  # the bf16 network's own initialiser
        params = perturbed(params16, k_noise)
        results = []
        for model in (model32, model16):
            def loss(p, model=model):
                score = models.get_score_fn(sde, model, p, train=False, continuous=continuous)(x, t)
                return jnp.mean(score * x), score

            if with_grads:
                (_, score), grads = jax.value_and_grad(loss, has_aux=True)(params)
            else:
                score, grads = loss(params)[1], None
            results.append((score, grads))
        return params16, results

    run = jax.jit(run).lower(jax.random.key(0), x).compile(compiler_options=_FAST_COMPILE)
    return run(jax.random.key(0), x)


@pytest.mark.slow  # by default the jaxpr check below shows every network computes in bfloat16
@pytest.mark.parametrize("name", CASES)
def test_bfloat16_score_is_float32_and_close_to_float32_network(name):
    params16, ((score32, _), (score16, _)) = evaluate_both(name, with_grads=False)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params16))
    assert score16.dtype == jnp.float32 and score16.shape == score32.shape
    assert np.all(np.isfinite(score16))
    err = relative_error(score16, score32)
    # close to float32, yet not equal: the network really computed in bfloat16 (8-bit mantissa)
    assert 1e-5 < err < 5e-2, err


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_bfloat16_gradients_are_float32_and_close_to_float32_network(name):
    _, ((_, grads32), (_, grads16)) = evaluate_both(name, with_grads=True)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads16))
    g16, g32 = (np.concatenate([np.ravel(g) for g in jax.tree.leaves(g)]) for g in (grads16, grads32))
    assert np.all(np.isfinite(g16))
    assert relative_error(g16, g32) < 5e-2, relative_error(g16, g32)


def _equations(jaxpr):
    """Every equation of `jaxpr` and of the jaxprs nested in it (jit, custom_vjp, ...)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            yield from _equations(sub)


def tiny_config_of(name):
    config = get_default_config()
    m = config.model
    m.name, m.nf, m.ch_mult, m.num_res_blocks, m.attn_resolutions = name, 8, (1, 2), 1, (4,)
    m.hidden_dims, m.compute_dtype = (16, 16), "bfloat16"
    if name == "ddpm":
        m.nf = 32  # DDPM's GroupNorm has 32 groups
    if name == "ncsnpp":
        m.fir, m.progressive, m.progressive_input, m.progressive_combine = True, "output_skip", "residual", "cat"
    if name.startswith("ncsnv2"):
        config.data.image_size = 16
    return config


@pytest.mark.parametrize("name", sorted(models.MODELS.names()))
def test_bfloat16_network_runs_every_convolution_and_matmul_in_bfloat16(name):
    """No float32 operand sneaks in (e.g. a numpy float64 constant promoting a bf16 activation)."""
    config = tiny_config_of(name)
    model = models.build_model(config)
    x = jnp.zeros(models.input_shape_of(config))
    params = jax.eval_shape(lambda k: models.init_params(k, model, x.shape), jax.random.key(0))
    jaxpr = jax.make_jaxpr(lambda p: model.apply({"params": p}, x, jnp.ones((1,))))(params)
    heavy = [e for e in _equations(jaxpr.jaxpr) if e.primitive.name in ("conv_general_dilated", "dot_general")]
    assert heavy
    for eqn in heavy:
        assert all(v.aval.dtype == jnp.bfloat16 for v in eqn.invars), eqn


def test_unknown_compute_dtype_is_rejected_naming_the_key():
    config, _, _ = tiny_ncsnpp_ve()
    config.model.compute_dtype = "float16"
    with pytest.raises(ConfigError, match="model.compute_dtype"):
        validate_config(config)
    with pytest.raises(ValueError, match="model.compute_dtype"):
        models.build_model(config)
