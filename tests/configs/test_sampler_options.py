"""Sampler options a config sets but the chosen setting ignores are named in one warning each
(`configs.builders.build_sampler`); the shipped family defaults raise none."""
import warnings

import pytest

from configs import families
from configs.builders import build_sampler, build_sde
from configs.default import get_default_config


def _config(method, **options):
    config = get_default_config()
    config.sampling.method = method
    for key, value in options.items():
        config.sampling[key] = value
    return config


@pytest.mark.parametrize("method, options, option, reason", [
    ("dpm_solver", {"rho": 5.0}, "sampling.rho = 5.0", "schedule is 'log_snr'"),
    ("edm_heun", {"S_min": 0.05, "S_noise": 1.003}, "sampling.S_min = 0.05", "S_churn = 0"),
    ("edm_heun", {"S_min": 0.05, "S_noise": 1.003}, "sampling.S_noise = 1.003", "S_churn = 0"),
    ("ode", {"solver": "heun", "num_steps": 12, "rtol": 1e-3}, "sampling.rtol = 0.001", "fixes the steps"),
    ("pc", {"predictor": "euler_maruyama", "corrector": "none", "snr": 0.1}, "sampling.snr = 0.1",
     "corrector is 'none'"),
])
def test_an_option_without_effect_is_named_with_the_reason(method, options, option, reason):
    config = _config(method, **options)
    with pytest.warns(UserWarning) as record:
        build_sampler(config, build_sde(config))
    messages = [str(w.message) for w in record]
    assert any(option in m and reason in m and repr(method) in m for m in messages), messages


@pytest.mark.parametrize("family", sorted(families.FAMILIES))
@pytest.mark.parametrize("method", ["pc", "ode", "edm_heun", "dpm_solver", "ddim"])
def test_family_defaults_raise_no_option_warning(family, method):
    config = families.FAMILIES[family](get_default_config())
    config.sampling.method = method
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        build_sampler(config, build_sde(config))
