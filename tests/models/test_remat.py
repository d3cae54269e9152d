"""`model.remat`: NCSN++ with its residual blocks under `nn.remat` has the same parameter tree,
outputs and gradients as without, and its backward pass really recomputes (a remat in the jaxpr)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
from models.ncsnpp import NCSNpp

_FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _plain_and_remat():
    plain = NCSNpp(nf=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), init_scale=1.0, dropout=0.1)
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    params = models.init_params(jax.random.key(0), plain, x.shape)
    return plain, dataclasses.replace(plain, remat=True), x, params


def _loss_and_grads(model, x):
    labels = jnp.array([3.0, 500.0])

    def loss(params):  # dropout on, with a fixed key: the recomputation must redraw the same mask
        out = model.apply({"params": params}, x, labels, train=True, rngs={"dropout": jax.random.key(2)})
        return jnp.sum(out ** 2)

    return jax.value_and_grad(loss)


def test_remat_keeps_the_parameter_tree_and_recomputes_in_the_backward_pass():
    plain, remat, x, params = _plain_and_remat()
    remat_shapes = jax.eval_shape(lambda k: models.init_params(k, remat, x.shape), jax.random.key(0))
    assert jax.tree.structure(remat_shapes) == jax.tree.structure(params)
    assert "remat" in str(jax.make_jaxpr(_loss_and_grads(remat, x))(params))
    assert "remat" not in str(jax.make_jaxpr(_loss_and_grads(plain, x))(params))


@pytest.mark.slow  # two U-Net gradients to compile
def test_remat_keeps_outputs_and_gradients():
    plain, remat, x, params = _plain_and_remat()
    run = jax.jit(lambda p: (_loss_and_grads(plain, x)(p), _loss_and_grads(remat, x)(p)))
    (loss_0, grads_0), (loss_1, grads_1) = run.lower(params).compile(compiler_options=_FAST_COMPILE)(params)
    np.testing.assert_allclose(loss_1, loss_0, rtol=1e-6)
    flat_0, flat_1 = (np.concatenate([np.ravel(g) for g in jax.tree.leaves(g)]) for g in (grads_0, grads_1))
    # Relative to the whole gradient: some entries are zero up to rounding (a bias before a GroupNorm).
    np.testing.assert_allclose(flat_1, flat_0, atol=1e-6 * float(np.max(np.abs(flat_0))))
    assert float(loss_0) > 0
