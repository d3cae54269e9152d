"""Class-conditional networks: a learned label embedding (plus a null class) joins the noise
embedding; unconditional networks keep the 2021 parameter tree; EDM preconditioning with Fourier
features is finite (the network embeds c_noise as given, no second log)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
import sde_lib
from models.ddpm import DDPM
from models.mlp import MLP
from models.ncsn import NCSN
from models.ncsnpp import NCSNpp

_FAST = {"xla_backend_optimization_level": 0}
NETS = {
    "ncsnpp": (lambda k: NCSNpp(nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), num_classes=k,
                                embedding_type="fourier", init_scale=1.0), (2, 8, 8, 1), 32),
    "ddpm": (lambda k: DDPM(nf=32, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), num_classes=k), (2, 8, 8, 1), 32),
    "mlp": (lambda k: MLP(hidden_dims=(32,), nf=16, num_classes=k), (2, 2), 16),
}


def _count(tree) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n == "mlp" else pytest.mark.slow) for n in NETS])
def test_conditional_network_adds_only_a_label_table_and_the_null_class_is_the_default(name):
    build, shape, emb = NETS[name]
    x, noise = jax.random.normal(jax.random.key(0), shape), jnp.array([0.3, 0.7])
    uncond, cond = build(0), build(10)
    p0 = models.init_params(jax.random.key(1), uncond, shape)
    p1 = models.init_params(jax.random.key(1), cond, shape)
    assert "label_embedding" not in p0
    assert p1["label_embedding"]["embedding"].shape == (11, emb)  # 10 classes + the null class
    assert _count(p1) - _count(p0) == 11 * emb
    # Same tree otherwise: the unconditional layers are named as before.
    assert jax.tree.structure({k: v for k, v in p1.items() if k != "label_embedding"}) == jax.tree.structure(p0)
    p1 = jax.tree.map(lambda a: a + 0.05 * jax.random.normal(jax.random.key(2), a.shape), p1)
    # One compiled program: the default (no labels) and three labelled calls.
    null, ten, three, four = jax.jit(lambda p: (cond.apply({"params": p}, x, noise), *(
        cond.apply({"params": p}, x, noise, class_labels=jnp.full((2,), c)) for c in (10, 3, 4))))(p1)
    np.testing.assert_allclose(np.asarray(ten), np.asarray(null), rtol=1e-5, atol=1e-6)
    assert not np.allclose(three, four)


def test_labels_are_refused_by_unconditional_networks():
    x = jnp.zeros((1, 2))
    model = MLP(hidden_dims=(8,), nf=8)
    params = models.init_params(jax.random.key(0), model, x.shape)
    with pytest.raises(ValueError, match="unconditional"):
        model.apply({"params": params}, x, jnp.ones(1), class_labels=jnp.zeros(1, jnp.int32))
    assert models.num_label_classes(NCSN(num_classes=10, nf=8)) == 0  # NCSN's "classes" are noise levels


PRECONDS = ("edm", "ve", "vp")


def _edm_ncsnpp():
    model = NCSNpp(nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), embedding_type="fourier",
                   init_scale=1.0, dropout=0.0)
    x = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))
    return model, x, models.init_params(jax.random.key(1), model, x.shape)


def test_edm_preconditioned_ncsnpp_with_fourier_features_is_finite():
    """The reported NaN: c_noise = 0.25 ln sigma < 0 for sigma < 1 used to be logged again."""
    model, x, params = _edm_ncsnpp()
    sigma = jnp.array([0.002, 0.5, 80.0])
    outs = jax.jit(lambda p: [models.get_denoiser_fn(model, p, models.build_precond(name), train=False)(x, sigma)
                              for name in PRECONDS]).lower(params).compile(_FAST)(params)
    for name, out in zip(PRECONDS, outs, strict=True):
        assert np.isfinite(np.asarray(out)).all(), name


@pytest.mark.slow
@pytest.mark.parametrize("name", PRECONDS)
def test_edm_loss_and_gradients_of_a_preconditioned_ncsnpp_are_finite(name):
    model, x, params = _edm_ncsnpp()
    precond, loss = models.build_precond(name), sde_lib.EDMLoss()

    def objective(p):
        return jnp.mean(loss(models.get_denoiser_fn(model, p, precond, train=False), x, jax.random.key(2)))

    value, grads = jax.jit(jax.value_and_grad(objective)).lower(params).compile(_FAST)(params)
    assert np.isfinite(float(value)) and all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_fourier_networks_embed_log_sigma_of_the_2021_convention():
    """Without preconditioning the reference label (sigma for continuous VE) reaches a Fourier
    network as log sigma: the score equals the raw network at log sigma divided by sigma."""
    sde = sde_lib.VESDE(sigma_min=0.01, sigma_max=50.0)
    model = MLP(hidden_dims=(16,), nf=8, embedding_type="fourier", scale_by_sigma=True)
    x = jax.random.normal(jax.random.key(0), (2, 2))
    params = models.init_params(jax.random.key(1), model, x.shape)
    t = jnp.array([0.1, 0.9])
    score = models.get_score_fn(sde, model, params, train=False, continuous=True)(x, t)
    sigma = sde.marginal_std(t)
    raw = model.apply({"params": params}, x, jnp.log(sigma))
    np.testing.assert_allclose(np.asarray(score), np.asarray(raw / sigma[:, None]), rtol=1e-6)
