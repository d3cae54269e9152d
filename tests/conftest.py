"""Test-wide JAX settings: a persistent compilation cache, and float64 for the maths tests."""
import os
import pathlib
import subprocess
import sys

# Before jax loads LAPACK: OpenBLAS's own thread pool under jaxlib's batched LAPACK calls has
# deadlocked test processes on a loaded 2-core machine; one thread per call is plenty here.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# Compilation dominates the suite's time: LLVM's expensive passes cost ~9% of its CPU and buy
# nothing at test sizes. Set before jax loads; subprocesses (the CLI tests) inherit it.
FAST_COMPILE_FLAGS = "--xla_llvm_disable_expensive_passes=true"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE_FLAGS}".strip()

import jax  # noqa: E402
import pytest  # noqa: E402

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
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count=4 {FAST_COMPILE_FLAGS}", JAX_PLATFORMS="cpu",
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


class ReferenceNetworks:
    """`<repo>/../shared/fixtures/reference_networks/` (or $REFERENCE_NETWORKS_DIR): small networks run by the 2021 reference
    code (its README), with their configs here and one jitted forward per network shared by all
    tests of a session."""

    root = pathlib.Path(os.environ.get(
        "REFERENCE_NETWORKS_DIR",
        pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "reference_networks"))
    # the reference's config name -> ours
    CONFIGS = {
        "ve/cifar10_ncsnpp_continuous": "ve/cifar10_ncsnpp_continuous.py",
        "vp/cifar10_ddpmpp_continuous": "vp/cifar10_ddpmpp_continuous.py",
        "vp/ddpm/cifar10": "vp/cifar10_ddpm.py",
        "ve/celebahq_256_ncsnpp_continuous": "celebahq/ncsnpp_256_continuous.py",
    }

    def __init__(self):
        self._files, self._forwards = {}, {}

    def load(self, name: str) -> dict:
        """The arrays of `<name>.npz` (e.g. "pytorch_ve_small") plus its parsed `meta`."""
        if name not in self._files:
            import json

            import numpy as np

            path = self.root / f"{name}.npz"
            if not path.is_file():
                pytest.skip(f"reference network fixture {path} not found (CI places shared/ beside the clone)")
            with np.load(path, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files if not key.startswith("activations/")}
            arrays["meta"] = json.loads(bytes(arrays["meta"]))
            self._files[name] = arrays
        return self._files[name]

    def config(self, name: str):
        """Our config of the fixture's reference config with its overrides, XLA convolutions."""
        from configs.load import load_config

        meta = self.load(name)["meta"]
        config = load_config(pathlib.Path(__file__).resolve().parent.parent / "configs" / self.CONFIGS[meta["config"]],
                             meta["overrides"])
        config.model.conv_impl = "xla"
        return config

    def forward(self, name: str):
        """`(model, compiled f(params, x, labels))` of the fixture's network; one per configuration."""
        import models

        config = self.config(name)
        key = config.model.to_json_best_effort() + config.data.to_json_best_effort()
        if key not in self._forwards:
            model = models.build_model(config)

            def reference_output(p, x, labels):
                # The 2021 NCSN++ embeds log sigma and divides by sigma itself; ours takes the
                # embedded label and leaves the division to get_score_fn.
                out = model.apply({"params": p}, x, models.network_noise_labels(model, labels))
                if getattr(model, "scale_by_sigma", False):
                    out = out / labels.reshape((-1,) + (1,) * (out.ndim - 1))
                return out

            self._forwards[key] = model, CompileOnce(reference_output)
        return self._forwards[key]

    @staticmethod
    def compile_once(fn):
        return CompileOnce(fn)


class CompileOnce:
    """`fn` jitted and compiled at its first call at XLA's lowest backend optimisation level, which
    halves the compile time of a test network (outputs agree to float32 rounding); later calls
    must pass arguments of the same shapes."""

    def __init__(self, fn):
        import jax

        self._jit, self._compiled = jax.jit(fn), None

    def __call__(self, *args):
        if self._compiled is None:
            self._compiled = self._jit.lower(*args).compile(
                compiler_options={"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True})
        return self._compiled(*args)


@pytest.fixture(scope="session")
def reference_networks():
    return ReferenceNetworks()
