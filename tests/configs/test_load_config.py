"""load_config: a config file plus `a.b.c=value` overrides, each parsed to the key's type."""
import re

import pytest

from configs import ConfigError, apply_override, get_default_config, load_config

DIGITS = "configs/digits.py"


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    import pathlib

    monkeypatch.chdir(pathlib.Path(__file__).resolve().parents[2])


def test_overrides_are_parsed_to_the_key_types():
    config = load_config(DIGITS, [
        "training.batch_size=32", "optim.lr=1", "data.random_flip=true", "model.ch_mult=(1, 2)",
        "model.attn_resolutions=()", "model.name='ncsnpp'", "training.sde=subvpsde", "model.fir_kernel=1,3,3,1",
    ])
    assert config.training.batch_size == 32 and isinstance(config.training.batch_size, int)
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert config.data.random_flip is True
    assert config.model.ch_mult == (1, 2)
    assert config.model.attn_resolutions == ()
    assert config.model.name == "ncsnpp"
    assert config.training.sde == "subvpsde"
    assert config.model.fir_kernel == (1, 3, 3, 1)


def test_config_flags_spelling_is_accepted():
    assert load_config(DIGITS, ["--config.training.n_iters=7"]).training.n_iters == 7


def test_later_override_wins():
    assert load_config(DIGITS, ["training.batch_size=32", "training.batch_size=16"]).training.batch_size == 16


def test_unknown_override_key_is_named():
    with pytest.raises(ConfigError, match=re.escape(
            "unknown config key 'training.batchsize' (did you mean 'training.batch_size'?)")):
        load_config(DIGITS, ["training.batchsize=3"])


def test_override_of_a_section_is_rejected():
    with pytest.raises(ConfigError, match=re.escape("unknown config key 'training'")):
        apply_override(get_default_config(), "training=3")


@pytest.mark.parametrize("override, message", [
    ("training.batch_size=abc", "config key 'training.batch_size' must be int, got 'abc'"),
    ("training.batch_size=1.5", "config key 'training.batch_size' must be int, got float 1.5"),
    ("data.centered=maybe", "config key 'data.centered' must be bool (true/false), got 'maybe'"),
    ("model.ch_mult=(1, 'a')", "config key 'model.ch_mult' must be tuple of int, got tuple (1, 'a')"),
    ("training.batch_size", "override 'training.batch_size' must look like key=value, e.g. training.batch_size=64"),
])
def test_badly_typed_override_is_named(override, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        load_config(DIGITS, [override])


def test_overridden_config_is_validated():
    with pytest.raises(ConfigError, match=re.escape("config key 'data.image_size' (9) must be divisible")):
        load_config(DIGITS, ["data.image_size=9"])


def test_validation_can_be_deferred():
    assert load_config(DIGITS, ["data.image_size=9"], validate=False).data.image_size == 9


def test_missing_file_is_named():
    with pytest.raises(FileNotFoundError, match=re.escape("config file 'configs/nope.py' does not exist")):
        load_config("configs/nope.py", [])
