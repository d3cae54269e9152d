"""The CIFAR-10 reference configs build networks with the parameter counts of the 2021 score-SDE
code (Song et al. 2021, table 3 / app. H) to the reported precision (0.01 M), counted with
`jax.eval_shape` (nothing is allocated, so the 100 M-parameter deep models cost well under a
second each). The small reference networks match exactly (tests/models/test_reference_parity.py)."""
import pathlib

import flax.linen as nn
import jax
import pytest

import models
from configs.load import load_config
from models.ncsnpp import NCSNpp

CONFIG_ROOT = pathlib.Path(__file__).resolve().parents[2] / "configs"
# millions of parameters reported by the 2021 reference implementation
REFERENCE_COUNTS = {
    "ve/cifar10_ncsnpp_continuous.py": 62.76,
    "ve/cifar10_ncsnpp_deep_continuous.py": 107.59,
    "vp/cifar10_ddpmpp_continuous.py": 61.80,
    "vp/cifar10_ddpmpp_deep_continuous.py": 106.63,
    "vp/cifar10_ddpm.py": 35.22,
    # sub-VP trains the DDPM++ networks unchanged
    "subvp/cifar10_ddpmpp_continuous.py": 61.80,
    "subvp/cifar10_ddpmpp_deep_continuous.py": 106.63,
}


# The sub-VP configs build the VP networks (counted by default): they run with -m slow.
@pytest.mark.parametrize("relpath,millions", [
    pytest.param(path, millions, marks=pytest.mark.slow if path.startswith("subvp/") else ())
    for path, millions in REFERENCE_COUNTS.items()], ids=list(REFERENCE_COUNTS))
def test_cifar10_config_matches_reference_parameter_count(relpath, millions):
    config = load_config(CONFIG_ROOT / relpath)
    count = models.count_params(config)
    assert round(count / 1e6, 2) == millions, f"{relpath}: {count / 1e6:.4f} M, reference {millions} M"


def test_count_without_allocation_equals_count_of_initialised_params():
    model = NCSNpp(nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), fir=True,
                   progressive_input="residual", embedding_type="fourier")
    shape = (1, 8, 8, 3)
    init = jax.jit(lambda key: models.init_params(key, model, shape))
    key = jax.random.key(0)
    params = init.lower(key).compile(compiler_options={"xla_backend_optimization_level": 0})(key)
    assert models.count_params(model, shape) == sum(p.size for p in jax.tree.leaves(params))


def test_count_is_independent_of_compute_dtype_and_batch():
    config = load_config(CONFIG_ROOT / "vp/cifar10_ddpm.py")
    base = models.count_params(config)
    config.model.compute_dtype = "bfloat16"
    assert models.count_params(config) == base
    assert models.count_params(models.build_model(config), (4, 32, 32, 3)) == base


def test_count_of_a_module_needs_an_input_shape():
    with pytest.raises(ValueError, match="input_shape"):
        models.count_params(nn.Dense(3))


@pytest.mark.slow
def test_deep_variant_only_adds_residual_blocks():
    """Doubling num_res_blocks (4 -> 8) adds the same parameters to VE NCSN++ and VP DDPM++,
    whose extra blocks are identical BigGAN blocks at the same widths."""
    added = []
    for family, name in (("ve", "ncsnpp"), ("vp", "ddpmpp")):
        base = models.count_params(load_config(CONFIG_ROOT / f"{family}/cifar10_{name}_continuous.py"))
        deep = models.count_params(load_config(CONFIG_ROOT / f"{family}/cifar10_{name}_deep_continuous.py"))
        added.append(deep - base)
    assert added[0] == added[1] > 0
