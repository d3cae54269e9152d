"""Test-wide JAX settings: a persistent compilation cache, and float64 for the maths tests."""
import os
import pathlib
import subprocess
import sys

import jax
import pytest

# One cache folder per xdist worker: JAX writes cache entries non-atomically, and a worker
# reading an entry another is still writing has been seen to hang the reading process.
_CACHE = pathlib.Path(__file__).resolve().parent.parent / ".jax_cache" / os.environ.get("PYTEST_XDIST_WORKER", "main")
jax.config.update("jax_compilation_cache_dir", os.environ.get("JAX_COMPILATION_CACHE_DIR", str(_CACHE)))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture
def x64():
    """Float64 with strict rank promotion: for tests about formulas, not throughput."""
    with jax.enable_x64(True), jax.numpy_rank_promotion("raise"):
        yield


@pytest.fixture(scope="session")
def run_on_four_devices():
    """`run(script, timeout) -> CompletedProcess`: `python -c script` from the repository root with
    4 fake CPU devices. A subprocess, because the device count is fixed when jax starts."""
    root = pathlib.Path(__file__).resolve().parent.parent
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(root))

    def run(script: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True,
                              timeout=timeout)

    return run


def _load_inception_reference():
    """tests/training/inception_reference/random_weights.py, shared with its torch-side maker."""
    import importlib.util

    path = pathlib.Path(__file__).parent / "training" / "inception_reference" / "random_weights.py"
    spec = importlib.util.spec_from_file_location("inception_random_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


INCEPTION_REFERENCE = _load_inception_reference()


@pytest.fixture(scope="session")
def inception_reference():
    """The module of deterministic random weights and images that the pytorch-fid reference used."""
    return INCEPTION_REFERENCE


@pytest.fixture(scope="session")
def random_inception_weights(tmp_path_factory):
    """`(state_dict, npz_path)`: deterministic random FID-Inception weights in pytorch-fid's layout
    (real ones cannot be downloaded here), as arrays and as a weights file."""
    import numpy as np

    from training.inception import state_dict_shapes

    state_dict = INCEPTION_REFERENCE.random_state_dict(state_dict_shapes())
    path = tmp_path_factory.mktemp("inception") / "fid_inception.npz"
    np.savez(path, **state_dict)
    return state_dict, path
