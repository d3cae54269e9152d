"""Test-wide JAX settings: a persistent compilation cache, and float64 for the maths tests."""
import os
import pathlib

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
