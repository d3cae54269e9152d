import jax
import jax.numpy as jnp
import pytest

import sde_lib


@pytest.mark.parametrize("name", ["vpsde", "subvpsde", "vesde"])
def test_registry_builds_every_sde_and_rejects_unknown_parameters(name):
    sde = sde_lib.build_sde(name, N=10)
    assert sde.N == 10
    with pytest.raises(TypeError, match="no parameter"):
        sde_lib.build_sde(name, beta_mni=1.0)


def test_unknown_sde_name_lists_known_ones():
    with pytest.raises(KeyError, match="known: subvpsde, vesde, vpsde"):
        sde_lib.build_sde("vp")


def test_dsm_loss_runs_under_jit():
    sde = sde_lib.VESDE()
    loss = sde_lib.DSMLoss(sde)
    out = jax.jit(lambda x, k: loss(lambda y, t: -y, x, k))(jnp.ones((4, 3)), jax.random.key(0))
    assert out.shape == (4,)
