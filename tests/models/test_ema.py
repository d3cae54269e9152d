"""EMA of parameters: the constant-rate recursion's closed form, the warm-up schedule, pytrees."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.ema import ema_rate_at, ema_update


def test_constant_rate_matches_the_closed_form_of_the_recursion():
    # After k updates towards a fixed p from e_0: e_k = p + r^k (e_0 - p).
    rate, k = 0.9, 25
    params = {"w": jnp.full((3,), 2.0), "b": {"c": jnp.array(-1.0)}}
    ema = jax.tree.map(jnp.zeros_like, params)
    step = jax.jit(lambda e: ema_update(e, params, rate))
    for _ in range(k):
        ema = step(ema)
    for leaf, target in zip(jax.tree.leaves(ema), jax.tree.leaves(params), strict=True):
        np.testing.assert_allclose(leaf, target * (1 - rate**k), rtol=1e-5)


def test_warmup_uses_min_of_rate_and_step_schedule():
    steps = jnp.array([0, 1, 10, 1000, 100_000])
    expected = np.minimum(0.999, (1 + np.asarray(steps)) / (10 + np.asarray(steps)))
    np.testing.assert_allclose(ema_rate_at(0.999, steps, warmup=True), expected, rtol=1e-6)
    assert float(ema_rate_at(0.999, 5)) == pytest.approx(0.999)
    # The first warm-up update moves e most of the way to the parameters: r = 0.1 at step 0.
    out = ema_update({"w": jnp.zeros(2)}, {"w": jnp.ones(2)}, 0.999, step=0, warmup=True)
    np.testing.assert_allclose(out["w"], 0.9, rtol=1e-6)


def test_warmup_without_step_is_rejected_and_dtype_is_kept():
    with pytest.raises(ValueError, match="needs the step"):
        ema_rate_at(0.99, None, warmup=True)
    out = ema_update({"w": jnp.zeros(2, jnp.bfloat16)}, {"w": jnp.ones(2, jnp.float32)}, 0.5)
    assert out["w"].dtype == jnp.bfloat16
