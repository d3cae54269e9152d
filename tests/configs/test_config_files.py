"""Every config file under configs/ loads and validates; the family deltas set the reference
sampling defaults."""
import pathlib

import pytest

from configs import families, get_default_config, load_config, validate_config

CONFIG_ROOT = pathlib.Path(__file__).resolve().parents[2] / "configs"
CONFIG_FILES = sorted(p for p in CONFIG_ROOT.rglob("*.py") if "def get_config(" in p.read_text())


def test_config_files_are_discovered():
    names = {str(p.relative_to(CONFIG_ROOT)) for p in CONFIG_FILES}
    assert {"digits.py", "toy2d.py", "celeba/ncsnpp_continuous.py", "ffhq/ncsnpp_1024_continuous.py",
            "lsun/church_ncsnpp_continuous.py"} <= names


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(CONFIG_ROOT)))
def test_every_config_file_loads_and_validates(path):
    config = load_config(path, [])
    assert config.is_locked, "configs start from the locked schema, so misspelled keys fail"


def test_default_config_validates():
    validate_config(get_default_config())


@pytest.mark.parametrize("family, sde, predictor, corrector, centered", [
    ("ve", "vesde", "reverse_diffusion", "langevin", False),
    ("vp", "vpsde", "euler_maruyama", "none", True),
    ("subvp", "subvpsde", "euler_maruyama", "none", True),
    ("ddpm", "vpsde", "ancestral_sampling", "none", True),
    ("smld", "vesde", "none", "ald", False),
])
def test_family_sets_sde_and_reference_sampler(family, sde, predictor, corrector, centered):
    config = families.FAMILIES[family](get_default_config())
    assert (config.training.sde, config.sampling.predictor, config.sampling.corrector) == (sde, predictor, corrector)
    assert config.data.centered is centered
    validate_config(config)


def test_ve_family_uses_snr_016():
    assert families.ve(get_default_config()).sampling.snr == 0.16


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(CONFIG_ROOT)))
def test_every_config_builds_its_network(path):
    models = pytest.importorskip("models")
    assert models.count_params(load_config(path, [])) > 0


@pytest.mark.parametrize("name, limit", [("digits.py", 2_000_000), ("toy2d.py", 500_000)])
def test_embedded_demo_networks_stay_small(name, limit):
    models = pytest.importorskip("models")
    assert 0 < models.count_params(load_config(CONFIG_ROOT / name, [])) < limit
