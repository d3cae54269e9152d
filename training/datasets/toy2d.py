"""TFDS builder for 2-D toy distributions: samples drawn once with a fixed seed, no download.

Configs (``toy2d/<name>``):
- ``gmm8``: the equal-weight mixture of 8 isotropic Gaussians with means on a circle of radius
  `GMM_RADIUS` and standard deviation `GMM_STD`; its exact density and score under any SDE are
  `sde_lib.GaussianMixture(*gmm8_parameters())`, so learned scores can be checked in closed form.
- ``checkerboard``: uniform on the black squares of a 4x4 board covering [-2, 2]^2.
- ``moons``: scikit-learn's two interleaving half circles, noise 0.05, centred and scaled by 1.5.
The label is the mixture component, the square, or the moon.
"""
import numpy as np
import tensorflow_datasets as tfds

GMM_COMPONENTS = 8
GMM_RADIUS = 2.0
GMM_STD = 0.1
NUM_TRAIN = 10_000
NUM_TEST = 2_000
_SEEDS = {"train": 0, "test": 1}


def gmm8_parameters() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights [8], means [8, 2], covs [8, 2, 2]) of the ``gmm8`` distribution, float64."""
    angles = 2 * np.pi * np.arange(GMM_COMPONENTS) / GMM_COMPONENTS
    means = GMM_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    covs = np.broadcast_to(GMM_STD**2 * np.eye(2), (GMM_COMPONENTS, 2, 2)).copy()
    return np.full(GMM_COMPONENTS, 1.0 / GMM_COMPONENTS), means, covs


def _gmm8(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    _, means, _ = gmm8_parameters()
    labels = rng.integers(GMM_COMPONENTS, size=n)
    return means[labels] + GMM_STD * rng.standard_normal((n, 2)), labels


def _checkerboard(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    # Pick one of the 8 black cells, then a uniform point in it.
    cells = np.array([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0])
    labels = rng.integers(len(cells), size=n)
    points = cells[labels] + rng.uniform(size=(n, 2)) - 2.0
    return points, labels


def _moons(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_moons

    points, labels = make_moons(n, noise=0.05, random_state=int(rng.integers(2**31)))
    return 1.5 * (points - np.array([0.5, 0.25])), labels


_SAMPLERS = {"gmm8": _gmm8, "checkerboard": _checkerboard, "moons": _moons}


def sample(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The stored (points [N, 2] float32, labels [N] int64) of config `name` and `split`."""
    n = NUM_TRAIN if split == "train" else NUM_TEST
    points, labels = _SAMPLERS[name](np.random.default_rng(_SEEDS[split]), n)
    return points.astype(np.float32), labels.astype(np.int64)


class Toy2d(tfds.core.GeneratorBasedBuilder):
    """2-D points with an integer label; 10000 train and 2000 test samples per config."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "gmm8, checkerboard and moons, fixed seeds."}
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name) for name in _SAMPLERS]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "point": tfds.features.Tensor(shape=(2,), dtype=np.float32),
                "label": tfds.features.Scalar(dtype=np.int64),
            }),
            supervised_keys=("point", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # generated, nothing to download
        return {split: self._generate_examples(split) for split in ("train", "test")}

    def _generate_examples(self, split):
        points, labels = sample(self.builder_config.name, split)
        for i, (point, label) in enumerate(zip(points, labels, strict=True)):
            yield i, {"point": point, "label": label}
