"""Deterministic random FID-Inception weights in pytorch-fid's state-dict layout, shared by the
reference maker (run under torch) and the test (run under jax): numpy only, keyed by name."""
import zlib

import numpy as np


def random_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    """He-scaled convolutions and perturbed BatchNorm statistics, so activations stay O(1) through
    all 94 layers and every running statistic and affine parameter changes the output."""
    out = {}
    for name in sorted(shapes):
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        shape = shapes[name]
        if name.endswith("conv.weight"):
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        elif name == "fc.weight":
            value = rng.normal(0.0, 1.0 / np.sqrt(shape[1]), shape)
        elif name.endswith("bn.weight") or name.endswith("running_var"):
            value = rng.uniform(0.5, 1.5, shape)
        else:  # bn.bias, running_mean, fc.bias
            value = rng.normal(0.0, 0.1, shape)
        out[name] = value.astype(np.float32)
    return out


def reference_images(seed: int = 1) -> dict[str, np.ndarray]:
    """Images in [0, 1], NHWC: one size that is upsampled (non-square), one already at 299."""
    rng = np.random.default_rng(seed)
    return {"small": rng.uniform(0, 1, (3, 40, 52, 3)).astype(np.float32),
            "full": rng.uniform(0, 1, (2, 299, 299, 3)).astype(np.float32)}
