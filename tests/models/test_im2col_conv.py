"""The im2col convolution (`model.conv_impl = "im2col"`) is XLA's convolution with another
kernel-gradient algorithm: the same outputs, input gradients and kernel gradients, alone and
inside a whole NCSN++ network."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import models
from configs import get_default_config, validate_config
from configs.validate import ConfigError
from models import im2col_conv
from models.ncsnpp import NCSNpp

DN = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize("kernel,strides,padding", [
    pytest.param((3, 3), (1, 1), "SAME", marks=pytest.mark.slow),
    pytest.param((3, 3), (2, 2), "SAME", marks=pytest.mark.slow),
    pytest.param((3, 3), (2, 2), "VALID", marks=pytest.mark.slow),
    pytest.param((1, 1), (1, 1), "SAME", marks=pytest.mark.slow),
    ((3, 2), (1, 2), ((2, 1), (0, 3))),  # the general case runs by default
])
def test_outputs_and_both_gradients_equal_xla(x64, kernel, strides, padding):
    kx, kw, ky = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (2, 9, 8, 3), jnp.float64)
    w = jax.random.normal(kw, (*kernel, 3, 5), jnp.float64)

    def xla(x, w):
        return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=DN)

    def mine(x, w):
        return im2col_conv.conv_general_dilated(x, w, strides, padding, dimension_numbers=DN)

    out_xla, vjp_xla = jax.vjp(xla, x, w)
    out, vjp = jax.vjp(mine, x, w)
    np.testing.assert_allclose(out, out_xla, rtol=1e-12, atol=1e-12)
    dy = jax.random.normal(ky, out.shape, jnp.float64)
    for g, g_xla in zip(vjp(dy), vjp_xla(dy), strict=True):
        np.testing.assert_allclose(g, g_xla, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kwargs,message", [
    ({"feature_group_count": 2}, "feature groups"),
    ({"lhs_dilation": (2, 2)}, "lhs_dilation"),
    ({"rhs_dilation": (2, 1)}, "rhs_dilation"),
    ({"dimension_numbers": ("NCHW", "OIHW", "NCHW")}, "NHWC"),
])
def test_unsupported_options_are_rejected_by_name(kwargs, message):
    x, w = jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 2, 2))
    with pytest.raises(ValueError, match=message):
        im2col_conv.conv_general_dilated(x, w, (1, 1), "SAME", **kwargs)


@pytest.mark.slow
def test_ncsnpp_with_im2col_equals_xla_in_outputs_and_gradients():
    """FIR up/down convolutions, BigGAN blocks, the residual input pyramid and the combiner all
    go through the chosen convolution; the parameters are shared, so the nets must agree."""
    options = dict(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), fir=True,
                   resamp_with_conv=True, progressive="output_skip", progressive_input="input_skip",
                   progressive_combine="cat", init_scale=1.0)
    xla, fast = NCSNpp(**options), NCSNpp(**options, conv_impl="im2col")
    x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 1))
    labels = jnp.array([0.5, 3.0])

    def run(key):
        params = models.init_params(key, xla, x.shape)
        outs = []
        for model in (xla, fast):
            def loss(p, model=model):
                out = model.apply({"params": p}, x, labels)
                return jnp.sum(out * x), out
            outs.append(jax.value_and_grad(loss, has_aux=True)(params))
        return outs

    run = jax.jit(run).lower(jax.random.key(0)).compile(compiler_options={"xla_backend_optimization_level": 0})
    ((_, out_xla), g_xla), ((_, out), g) = run(jax.random.key(0))
    np.testing.assert_allclose(out, out_xla, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_xla), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.max(np.abs(b))) + 1e-7)


def test_config_key_selects_the_implementation_and_rejects_unknown_names():
    config = get_default_config()
    assert config.model.conv_impl == "auto" and jax.default_backend() == "cpu"
    assert models.build_model(config).conv_impl == "im2col"  # auto: im2col on CPUs
    assert models.default_conv_impl("gpu") == models.default_conv_impl("tpu") == "xla"
    config.model.conv_impl = "xla"
    validate_config(config)
    assert models.build_model(config).conv_impl == "xla"
    config.model.conv_impl = "cudnn"
    with pytest.raises(ConfigError, match="model.conv_impl"):
        validate_config(config)
    with pytest.raises(ValueError, match="conv_impl"):
        NCSNpp(conv_impl="cudnn")
