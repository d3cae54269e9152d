"""A warm worker that runs training steps of yang-song/score_sde_pytorch on CPU, for
`scripts.benchmark_vs_pytorch` (which starts it by file path, so that the reference's top-level
`models`, `sde_lib` and `losses` are imported, not this repository's packages; it imports only
the standard library, numpy and torch).

    python scripts/pytorch_reference_worker.py REFERENCE_DIR CONFIG BATCH_SIZE

CONFIG is a config file of the reference relative to its `configs/` (e.g.
`vp/cifar10_ddpmpp_continuous.py`). The step is the reference's own `losses.get_step_fn`
(loss, backward, Adam with warm-up and gradient clipping, EMA update) on a uniform random batch
scaled to [-1, 1]. The protocol (`serve`) is shared with our side of the benchmark.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import pathlib
import sys
import time
from collections.abc import Callable


def serve(step: Callable[[], None]) -> None:
    """Worker loop: one warm-up step, then for each line `n` on stdin run `n` steps and print
    `{"seconds": wall, "cpu_seconds": process CPU time, all threads}` (the first line printed is
    `{"ready": true}`). CPU time depends less on the other jobs of a shared machine than wall time."""
    step()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        n = int(line)
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(n):
            step()
        print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start}),
              flush=True)


def reference_step(reference_dir: str, config_file: str, batch_size: int) -> Callable[[], None]:
    """One training step of the reference's network of `config_file`, as its `run_lib.train` runs it."""
    import numpy as np
    import torch
    import torch.utils.cpp_extension

    # the reference builds its CUDA ops at import; on a CPU it never calls them (native upfirdn2d)
    torch.utils.cpp_extension.load = lambda *args, **kwargs: None
    sys.path.insert(0, reference_dir)
    losses, sde_lib, mutils, ema = (importlib.import_module(name) for name in
                                    ("losses", "sde_lib", "models.utils", "models.ema"))
    for name in ("models.ddpm", "models.ncsnpp"):  # registers the networks
        importlib.import_module(name)
    spec = importlib.util.spec_from_file_location("reference_config",
                                                  pathlib.Path(reference_dir) / "configs" / config_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.device = torch.device("cpu")

    model = mutils.create_model(config)
    state = {"optimizer": losses.get_optimizer(config, model.parameters()), "model": model, "step": 0,
             "ema": ema.ExponentialMovingAverage(model.parameters(), decay=config.model.ema_rate)}
    if config.training.sde == "vpsde":
        sde = sde_lib.VPSDE(config.model.beta_min, config.model.beta_max, config.model.num_scales)
    else:
        sde = sde_lib.VESDE(config.model.sigma_min, config.model.sigma_max, config.model.num_scales)
    step_fn = losses.get_step_fn(sde, train=True, optimize_fn=losses.optimization_manager(config),
                                 reduce_mean=config.training.reduce_mean, continuous=config.training.continuous,
                                 likelihood_weighting=config.training.likelihood_weighting)
    shape = (batch_size, config.data.num_channels, config.data.image_size, config.data.image_size)
    batch = torch.from_numpy(np.random.default_rng(0).uniform(size=shape).astype(np.float32)) * 2 - 1

    def step():
        if not np.isfinite(float(step_fn(state, batch).detach())):
            raise FloatingPointError("non-finite loss in the reference's training step")
    return step


if __name__ == "__main__":
    reference_dir, config_file, batch_size = sys.argv[1:]
    serve(reference_step(reference_dir, config_file, int(batch_size)))
