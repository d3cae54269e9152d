"""Every network, in a tiny configuration, runs forward and backward at 8, 16 and 32 pixels with
finite outputs and gradients, depends on its noise label, has reproducible dropout and gives
bfloat16 outputs close to float32 ones.

Compilation dominates on a CPU, so each check is one jitted function compiled with XLA's
backend optimisation off. By default every network runs forward at 8x8 (finite, shaped, noise
dependent); the gradient checks of the U-Nets (minutes of compile each on CI's CPU) run with -m slow,
and the sizes 16 and 32 too.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
from models.ddpm import DDPM
from models.mlp import MLP
from models.ncsn import NCSN
from models.ncsnpp import NCSNpp

_FAST_COMPILE = {"xla_backend_optimization_level": 0}
LABELS = jnp.array([0.5, 3.0])  # noise levels / timesteps of the two examples (class 0 and 3 for NCSN)

TINY = {
    # NCSN++ as for VE: FIR, BigGAN blocks, residual input pyramid, Fourier features, sigma scaling
    "ncsnpp_ve": lambda: NCSNpp(nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4, 16), fir=True,
                                progressive_input="residual", embedding_type="fourier", scale_by_sigma=True,
                                init_scale=1.0, centered=False),
    # DDPM++ as for VP: positional embedding, nearest resampling
    "ncsnpp_vp": lambda: NCSNpp(nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4, 16),
                                embedding_type="positional", init_scale=1.0),
    # the remaining options: DDPM blocks, output/input skips, concatenating combiner, ELU
    "ncsnpp_skip_cat": lambda: NCSNpp(nf=16, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(4,),
                                      resblock_type="ddpm", progressive="output_skip",
                                      progressive_input="input_skip", progressive_combine="cat", fir=True,
                                      skip_rescale=False, nonlinearity="elu", init_scale=1.0),
    "ncsnpp_residual": lambda: NCSNpp(nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                                      progressive="residual", progressive_input="residual",
                                      resamp_with_conv=False, embedding_type="fourier", init_scale=1.0),
    "ddpm": lambda: DDPM(nf=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4, 16), centered=False),
    "ncsnv2_64": lambda: models.MODELS.get("ncsnv2_64")(nf=8),
    "ncsnv2_128": lambda: models.MODELS.get("ncsnv2_128")(nf=8),
    "ncsnv2_256": lambda: models.MODELS.get("ncsnv2_256")(nf=8),
    "ncsn": lambda: NCSN(num_classes=10, nf=8, nonlinearity="elu"),
    "mlp": lambda: MLP(hidden_dims=(32, 48), nf=16),
}
DEFAULT_FORWARD = ["ncsnpp_ve", "ncsnpp_skip_cat", "ncsnpp_residual", "ddpm", "ncsnv2_64", "ncsn", "mlp"]
CASES = [
    pytest.param(name, size, marks=() if (size == 8 and name == "mlp") else pytest.mark.slow)
    for name in TINY for size in (8, 16, 32)
]


def compile_and_run(fn, *args):
    return jax.jit(fn).lower(*args).compile(compiler_options=_FAST_COMPILE)(*args)


def perturbed_params(model, key, shape):
    """Initial parameters plus noise, so zero-initialised output layers do not hide paths."""
    k_init, k_noise = jax.random.split(key)
    params = models.init_params(k_init, model, shape)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(k_noise, len(leaves))
    return jax.tree.unflatten(tree, [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)])


def _inputs(size, channels=3):
    x = jax.random.uniform(jax.random.key(1), (1, size, size, channels))
    return jnp.concatenate([x, x])  # two copies: only the noise label differs between the examples


@pytest.mark.parametrize("name,size", CASES)
def test_forward_backward_finite_with_shapes_and_noise_dependence(name, size):
    model = TINY[name]()
    x = _inputs(size)

    def run(key, x):
        params = perturbed_params(model, key, x.shape)

        def loss(params, x):
            out = model.apply({"params": params}, x, LABELS, train=False)
            return jnp.sum(out**2), out

        (value, out), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
        return value, out, grads

    value, out, (g_params, g_x) = compile_and_run(run, jax.random.key(0), x)
    assert out.shape == x.shape and out.dtype == jnp.float32
    assert np.isfinite(float(value)) and np.all(np.isfinite(out))
    g_leaves = jax.tree.leaves(g_params)
    assert all(np.all(np.isfinite(g)) for g in g_leaves) and np.all(np.isfinite(g_x))
    assert g_x.shape == x.shape and np.any(g_x != 0)
    # most parameters influence the output (BigGAN / attention / pyramid paths are wired in)
    assert np.mean([np.any(g != 0) for g in g_leaves]) > 0.9
    if name.startswith("ncsnv2"):  # unconditional: the noise level enters through scale_by_sigma
        np.testing.assert_allclose(out[0], out[1], rtol=1e-5, atol=1e-6)
    else:
        assert np.max(np.abs(out[0] - out[1])) > 1e-3 * np.max(np.abs(out))


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=() if n in DEFAULT_FORWARD else pytest.mark.slow) for n in TINY])
def test_forward_is_finite_shaped_and_depends_on_the_noise_label(name):
    model = TINY[name]()
    x = _inputs(8)
    out = compile_and_run(lambda key, x: model.apply({"params": perturbed_params(model, key, x.shape)}, x, LABELS),
                          jax.random.key(0), x)
    assert out.shape == x.shape and out.dtype == jnp.float32 and np.all(np.isfinite(out))
    if name.startswith("ncsnv2"):
        np.testing.assert_allclose(out[0], out[1], rtol=1e-5, atol=1e-6)
    else:
        assert np.max(np.abs(out[0] - out[1])) > 1e-3 * np.max(np.abs(out))


def test_mlp_takes_low_dimensional_data():
    model = TINY["mlp"]()
    x = jax.random.normal(jax.random.key(0), (4, 2))
    params = models.init_params(jax.random.key(1), model, x.shape)
    out = model.apply({"params": params}, x, jnp.linspace(1.0, 4.0, 4))
    assert out.shape == (4, 2) and np.all(np.isfinite(out))


def test_dropout_reproducible_for_a_key_and_varies_across_keys():
    model = NCSNpp(nf=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), dropout=0.5, init_scale=1.0)
    x = _inputs(8)
    params = perturbed_params(model, jax.random.key(0), x.shape)
    f = jax.jit(lambda p, x, k: model.apply({"params": p}, x, LABELS, train=True, rngs={"dropout": k}))
    f = f.lower(params, x, jax.random.key(5)).compile(compiler_options=_FAST_COMPILE)
    a, b, c = f(params, x, jax.random.key(5)), f(params, x, jax.random.key(5)), f(params, x, jax.random.key(6))
    np.testing.assert_array_equal(a, b)
    assert np.max(np.abs(a - c)) > 1e-3 * np.max(np.abs(a))
    with pytest.raises(ValueError, match="dropout_rng"):
        models.get_model_fn(model, params, train=True)


@pytest.mark.slow  # tests/models/test_precision.py compares bfloat16 scores by default
@pytest.mark.parametrize("name", TINY)
def test_bfloat16_compute_is_close_to_float32(name):
    model = TINY[name]()
    low = model.clone(dtype=jnp.bfloat16)
    x = _inputs(8)

    def run(key, x):
        params = perturbed_params(model, key, x.shape)
        out32 = model.apply({"params": params}, x, LABELS)
        out16 = low.apply({"params": params}, x, LABELS)
        return out32, out16, params

    out32, out16, params = compile_and_run(run, jax.random.key(0), x)
    assert out16.dtype == jnp.float32
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    rel = np.linalg.norm(out16 - out32) / np.linalg.norm(out32)
    assert rel < 0.05, rel
