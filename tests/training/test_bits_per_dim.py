"""Bits/dim over a split: the digits dequantised in their 17 levels in the model's range, the bin
width of that range, max_examples with a padded last batch, and nats/dim (no dequantisation) for
2-D points."""
import jax
import numpy as np
import pytest

from configs import load_config
from samplers import likelihood
from training.data import build_dataset
from training.evaluate import split_bits_per_dim
from training.experiment import build_experiment, make_score_fn
from training.likelihood import split_likelihood

TINY = ["model.name=mlp", "model.hidden_dims=(32,32)", "model.nf=16", "sampling.rtol=1e-3", "sampling.atol=1e-3",
        "eval.batch_size=4"]


def _experiment(config_file, overrides):
    config = load_config(config_file, TINY + overrides)
    shape = np.asarray(build_dataset(config, "train", batch_size=1, seed=config.seed)[0]["image"]).shape[1:]
    exp = build_experiment(config, shape)
    state, _ = exp.init_state()
    return config, exp, state.params


# Centred digits (bin width 2/17) with -m slow: tests/scripts/test_cli.py checks that width by
# default, and the hand computation below is the same for either range.
@pytest.mark.parametrize("centered", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_digits_bpd_is_the_flow_nll_of_dequantised_data_with_the_range_bin_width(centered):
    config, exp, params = _experiment("configs/digits.py", [f"data.centered={centered}"])
    rng = jax.random.PRNGKey(7)
    result = split_bits_per_dim(config, exp, params, "test", rng, max_examples=6)
    assert result["num_examples"] == 6 and result["dequantization"] == "uniform"
    assert result["bin_width"] == (2 / 17 if centered else 1 / 17) and result["levels"] == 17
    assert result["nfe"] > 10 and result["bpd_stderr"] > 0

    # The same numbers by hand: 17-level test digits dequantised to (k + u) / 17 in the model's range,
    # batches of 4 (the second one padded), probes from fold_in(rng, batch).
    config = config.copy_and_resolve_references()
    config.data.uniform_dequantization = True
    ds = build_dataset(config, "test", batch_size=4, seed=config.seed, shuffle=False, evaluation=True)
    x = np.concatenate([ds[0]["image"], ds[1]["image"][:2], ds[1]["image"][1:2].repeat(2, 0)])
    low, high = (-1.0, 1.0) if centered else (0.0, 1.0)
    assert x.min() >= low and x.max() <= high and len(np.unique(x)) > 100  # dequantised, not k/16
    # jitted with traced parameters like the library's: at rtol 1e-3 a different rounding (eager, or
    # parameters folded in as constants) can take different adaptive steps
    @jax.jit
    def solve(params, key, batch):
        score_fn = make_score_fn(exp.sde, exp.model, params, continuous=True, precond=exp.precond)
        return likelihood.log_likelihood(key, exp.sde, score_fn, batch, rtol=1e-3, atol=1e-3).logp

    logp = np.concatenate([np.asarray(solve(params, jax.random.fold_in(rng, i), x[4 * i: 4 * i + 4]))
                           for i in range(2)])[:6]
    bpd = likelihood.bits_per_dim(logp, 64, result["bin_width"])
    assert result["bpd"] == pytest.approx(float(np.mean(bpd)), abs=1e-4)
    assert result["bpd_median"] == pytest.approx(float(np.median(bpd)), abs=1e-4)
    worst = np.argsort(-np.asarray(bpd))[:3]  # positions in the split, largest bits/dim first
    assert [i for i, _ in result["worst_examples"]] == worst.tolist()
    np.testing.assert_allclose([b for _, b in result["worst_examples"]], np.asarray(bpd)[worst], atol=1e-4)


def test_points_report_nats_per_dim_without_dequantisation():
    config, exp, params = _experiment("configs/toy2d.py", [])
    result = split_bits_per_dim(config, exp, params, "test", jax.random.PRNGKey(0), max_examples=4)
    assert "bpd" not in result and "no dequantization" in result["unit"]
    assert result["num_examples"] == 4 and np.isfinite(result["nll_nats_per_dim"])


def test_rejects_nonpositive_max_examples():
    config, exp, params = _experiment("configs/toy2d.py", [])
    with pytest.raises(ValueError, match="max_examples must be positive"):
        split_bits_per_dim(config, exp, params, "test", jax.random.PRNGKey(0), max_examples=0)
    with pytest.raises(ValueError, match="max_examples must be positive"):
        split_likelihood(exp, params, [], jax.random.PRNGKey(0), batch_size=4, num_probes=1, rtol=1e-3, atol=1e-3,
                         bin_width=None, max_examples=-1)


def test_solves_stopped_at_max_steps_are_counted_and_never_averaged():
    config, exp, params = _experiment("configs/digits.py", ["sampling.max_steps=2"])
    result = split_bits_per_dim(config, exp, params, "test", jax.random.PRNGKey(0), max_examples=6)
    assert (result["num_solves"], result["num_failed_solves"], result["num_unsolved_examples"]) == (2, 2, 6)
    assert result["num_examples"] == 0 and result["bpd"] is None
