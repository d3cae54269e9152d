"""FIR resampling (StyleGAN2's upfirdn2d) written as shifted slices equals the depthwise,
input-dilated convolution that defines it, in value and gradient, for a separable and a
non-separable kernel."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import fir


def upfirdn2d_as_conv(x, kernel, up, down, pad):
    """The definition: zero-insert (lhs dilation), pad, depthwise true convolution, stride."""
    C = x.shape[-1]
    w = jnp.asarray(np.tile(kernel[::-1, ::-1, None, None], (1, 1, 1, C)), x.dtype)
    return jax.lax.conv_general_dilated(x, w, (down, down), [(pad[0], pad[1] + up - 1)] * 2, lhs_dilation=(up, up),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=C)


KERNELS = {"separable": fir._kernel_2d((1, 3, 3, 1)),
           "not_separable": np.arange(1.0, 10.0).reshape(3, 3) ** 1.5 / 50}


@pytest.mark.parametrize(("kernel", "up", "down", "pad"), [
    ("separable", 2, 1, (2, 1)),  # NCSN++'s upsampling
    ("separable", 1, 2, (1, 1)),  # and downsampling run by default
    ("not_separable", 2, 2, (0, 3)),
    pytest.param("separable", 1, 1, (1, 2), marks=pytest.mark.slow),
    pytest.param("not_separable", 2, 1, (2, 1), marks=pytest.mark.slow),
    pytest.param("not_separable", 1, 2, (1, 1), marks=pytest.mark.slow),
])
def test_upfirdn2d_equals_the_depthwise_dilated_convolution_and_its_gradient(kernel, up, down, pad):
    k = KERNELS[kernel]
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 7, 6, 3)), jnp.float32)
    out, vjp = jax.vjp(lambda x: fir.upfirdn2d(x, k, up=up, down=down, pad=pad), x)
    ref, ref_vjp = jax.vjp(lambda x: upfirdn2d_as_conv(x, k, up, down, pad), x)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    dy = jnp.asarray(np.random.default_rng(1).normal(size=ref.shape), jnp.float32)
    np.testing.assert_allclose(vjp(dy)[0], ref_vjp(dy)[0], rtol=1e-5, atol=1e-5)


def test_fir_resampling_changes_the_size_by_the_factor_and_keeps_a_constant_image():
    x = jnp.full((1, 8, 8, 2), 3.0)
    up, down = fir.upsample_2d(x), fir.downsample_2d(x)
    assert up.shape == (1, 16, 16, 2) and down.shape == (1, 4, 4, 2)
    # away from the zero padding a normalised low-pass filter passes a constant through
    np.testing.assert_allclose(up[:, 2:-2, 2:-2], 3.0, rtol=1e-6)
    np.testing.assert_allclose(down[:, 1:-1, 1:-1], 3.0, rtol=1e-6)
