"""The networks, converted from the 2021 reference code's own weights, give its outputs and its
scores (`../shared/fixtures/reference_networks`, made by running yang-song/score_sde and
score_sde_pytorch on random weights; float32 on CPU, 1e-5 relative)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

import models
import sde_lib
from models import convert
from models.ncsnv2 import NCSNv2
from training import builders

TOLERANCE = 1e-5
FLAX2021 = ["ve", "vp", "ddpm", "cat", "resid"]
PYTORCH = ["ve", "vp", "ddpm"]


def relative_error(value, reference) -> float:
    return float(np.linalg.norm(np.asarray(value) - reference) / np.linalg.norm(reference))


def nhwc(array: np.ndarray) -> np.ndarray:
    return array.transpose(0, 2, 3, 1)


def flax2021_params(fixture: dict) -> dict:
    return {key[len("params/"):]: value for key, value in fixture.items() if key.startswith("params/")}


def pytorch_state_dict(fixture: dict) -> dict:
    return {key[len("state_dict/"):]: value for key, value in fixture.items() if key.startswith("state_dict/")}


def n_params(params) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(params))


@pytest.mark.parametrize("name", FLAX2021)
def test_converted_2021_jax_network_gives_the_reference_output(reference_networks, name):
    fixture = reference_networks.load(f"flax2021_{name}_small")
    model, forward = reference_networks.forward(f"flax2021_{name}_small")
    params = convert.from_flax2021(flax2021_params(fixture), model, fixture["x"].shape)
    assert n_params(params) == fixture["meta"]["n_params"]
    out = forward(params, fixture["x"], fixture["labels"])
    assert relative_error(out, fixture["out"]) <= TOLERANCE


@pytest.mark.parametrize("name", PYTORCH)
def test_converted_pytorch_network_gives_the_reference_output_and_score(reference_networks, name):
    fixture = reference_networks.load(f"pytorch_{name}_small")
    config = reference_networks.config(f"pytorch_{name}_small")
    model, forward = reference_networks.forward(f"pytorch_{name}_small")
    params = convert.from_pytorch(pytorch_state_dict(fixture), model, nhwc(fixture["x"]).shape)
    assert n_params(params) == fixture["meta"]["n_params"]
    out = forward(params, nhwc(fixture["x"]), fixture["labels"])
    assert relative_error(out, nhwc(fixture["out"])) <= TOLERANCE

    # the reference's get_score_fn: its label and scaling conventions (discrete DDPM included)
    score_fn = models.get_score_fn(builders.build_sde(config), model, params, train=False,
                                   continuous=config.training.continuous)
    score = reference_networks.compile_once(score_fn)(jnp.asarray(nhwc(fixture["score_x"])), jnp.asarray(fixture["score_t"], jnp.float32))
    assert relative_error(score, nhwc(fixture["score"])) <= TOLERANCE


class _Echo(nn.Module):
    """Returns its noise labels at every pixel, to read which label and scaling a score used."""

    scale_by_sigma: bool = False

    @nn.compact
    def __call__(self, x, labels, train=False):
        return jnp.broadcast_to(labels.astype(jnp.float32)[:, None], x.shape)


def test_discrete_ddpm_score_feeds_the_fractional_step_and_divides_by_the_floored_std():
    """score_sde models/utils.py get_score_fn (VP, not continuous): label t (N - 1), std at int(label)."""
    sde = sde_lib.VPSDE(beta_min=0.1, beta_max=20.0, N=1000)
    t = jnp.array([0.725, 0.3337, 1e-3])
    score = models.get_score_fn(sde, _Echo(), {}, train=False, continuous=False)(jnp.zeros((3, 2)), t)
    labels = np.asarray(t, np.float64) * 999
    std = np.sqrt(1.0 - np.asarray(sde.alphas_cumprod, np.float64))[labels.astype(int)]
    np.testing.assert_allclose(score[:, 0], -labels / std, rtol=1e-5)


def test_discrete_smld_score_rounds_the_reversed_index_and_divides_by_its_sigma():
    """score_sde get_score_fn (VE, not continuous): label round((T - t)(N - 1)) indexes the
    descending noise levels; a scale_by_sigma network's output is divided by that sigma."""
    sde = sde_lib.VESDE(sigma_min=0.01, sigma_max=50.0, N=10)
    t = jnp.array([1.0, 0.52, 0.0])
    score = models.get_score_fn(sde, _Echo(scale_by_sigma=True), {}, train=False, continuous=False)(
        jnp.zeros((3, 2)), t)
    labels = np.round((1.0 - np.asarray(t, np.float64)) * 9)
    sigmas = np.exp(np.linspace(np.log(50.0), np.log(0.01), 10))
    np.testing.assert_allclose(score[:, 0], labels / sigmas[labels.astype(int)], rtol=1e-5)


def test_a_missing_extra_or_misshapen_weight_is_named(reference_networks):
    fixture = reference_networks.load("pytorch_ddpm_small")
    model, _ = reference_networks.forward("pytorch_ddpm_small")
    state_dict = pytorch_state_dict(fixture)
    state_dict.pop("all_modules.4.Conv_0.bias")
    state_dict["all_modules.3.Conv_0.weight"] = state_dict["all_modules.3.Conv_0.weight"][:, :, :2]
    state_dict["all_modules.3.extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(convert.ConversionError) as error:
        convert.from_pytorch(state_dict, model, nhwc(fixture["x"]).shape)
    message = str(error.value)
    assert "\n" not in message
    assert "1 missing (Downsample_0/Conv_0/bias (32,))" in message
    assert "1 extra (all_modules.3.extra.weight (3,))" in message
    assert "1 of another shape (all_modules.3.Conv_0.weight (32, 32, 2, 3) for ResnetBlockDDPMpp_0/Conv_0/kernel" in message


def test_2021_weights_of_another_config_are_refused_by_name(reference_networks):
    fixture = reference_networks.load("flax2021_vp_small")
    model, _ = reference_networks.forward("flax2021_ve_small")  # VE NCSN++: Fourier features, input pyramid
    with pytest.raises(convert.ConversionError, match="does not fit.*missing .*Downsample_0/FIRConv_0/bias"):
        convert.from_flax2021(flax2021_params(fixture), model, fixture["x"].shape)


def test_networks_without_a_converter_are_named():
    with pytest.raises(convert.ConversionError, match="NCSNv2.*supported: NCSNpp, DDPM"):
        convert.from_pytorch({}, NCSNv2(nf=8), (1, 16, 16, 3))
    with pytest.raises(convert.ConversionError, match="MLP"):
        convert.from_flax2021({}, models.MODELS.get("mlp")(), (1, 2))


def test_ncsnv2_2021_names_map_onto_ours():
    """The 2021 NCSNv2 names its norms InstanceNorm2dPlus with (1, 1, 1, C) parameters and wraps the
    down-sampling convolutions in ConvMeanPool modules (score_sde models/layers.py ResidualBlock)."""
    model, shape = NCSNv2(nf=4), (1, 16, 16, 3)
    expected, _ = convert.expected_shapes(model, shape)
    rng = np.random.default_rng(0)
    ours = {path: rng.standard_normal(leaf_shape).astype(np.float32) for path, leaf_shape in expected.items()}
    reference = {}
    for path, value in ours.items():
        path = path.replace("InstanceNormPlus_", "InstanceNorm2dPlus_")
        if path.startswith("ResidualBlock_2/"):  # the one down-sampling block without dilation
            path = path.replace("Conv_1/", "ConvMeanPool_0/Conv_0/").replace("Conv_2/", "ConvMeanPool_1/Conv_0/")
        if "InstanceNorm2dPlus" in path:
            value = value.reshape(1, 1, 1, -1)
        reference[path] = value
    converted = flatten_dict(convert.from_flax2021(reference, model, shape), sep="/")
    assert converted.keys() == ours.keys()
    for path, value in ours.items():
        np.testing.assert_array_equal(converted[path], value)
