"""TFDS builder for scikit-learn's 8x8 handwritten digits (UCI optdigits test set, 1797 images).

The images ship inside scikit-learn, so building needs no download and no TensorFlow. Each pixel
counts ink on a 4x4 block of a 32x32 bitmap (0..16); it is stored as uint8 ``round(k * 255 / 16)``
so that the usual [0, 1] scaling applies unchanged. The data have `NUM_LEVELS` = 17 levels, not
256: dequantisation and bits/dim use bins of the 17 levels (`training.datasets.quantization_levels`).
The train/test split is a fixed permutation (seed 0): 1497 train and 300 test images.
"""
import numpy as np
import tensorflow_datasets as tfds

NUM_EXAMPLES = 1797
NUM_TEST = 300
SPLIT_SEED = 0
MAX_LEVEL = 16
NUM_LEVELS = MAX_LEVEL + 1


def split_indices(split: str) -> np.ndarray:
    """Indices into `sklearn.datasets.load_digits()` of the fixed `"train"` or `"test"` split."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(NUM_EXAMPLES)
    return {"train": perm[NUM_TEST:], "test": perm[:NUM_TEST]}[split]


class Digits(tfds.core.GeneratorBasedBuilder):
    """8x8x1 uint8 digit images with labels 0..9, from scikit-learn (no download)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Fixed 1497/300 split by a seeded permutation."}

    def _info(self) -> tfds.core.DatasetInfo:
        # Tensor, not Image: encoding an Image feature needs TensorFlow.
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=10),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # the data ship with scikit-learn
        return {split: self._generate_examples(split) for split in ("train", "test")}

    def _generate_examples(self, split):
        from sklearn.datasets import load_digits

        digits = load_digits()
        for i in split_indices(split):
            image = np.round(digits.images[i] * (255.0 / MAX_LEVEL)).astype(np.uint8)[..., None]
            yield int(i), {"image": image, "label": int(digits.target[i])}
