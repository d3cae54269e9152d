"""The grain pipeline on the embedded digits: fixed split, value ranges, and batches that are a
pure function of (seed, step), so a resumed run reads exactly the batches it would have read."""
import re

import numpy as np
import pytest
from sklearn.datasets import load_digits

from configs import get_default_config
from training import data, datasets
from training.datasets import digits as digits_module

BATCH = 64


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tfds")
    datasets.embedded_builder("digits", path)  # build once for the module
    return path


def _config(tfds_dir, **data_changes):
    config = get_default_config()
    config.data.data_dir = str(tfds_dir)
    for key, value in data_changes.items():
        config.data[key] = value
    return config


class _Indexed:
    """A source whose example i is an 8x8x1 image filled with i (to track positions)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"image": np.full((8, 8, 1), i, np.uint8), "label": i}


def _ids(batch):
    return np.rint(batch["image"][:, 0, 0, 0] * 255).astype(int)


def test_split_is_fixed_1497_train_300_test_and_disjoint(tfds_dir):
    builder = datasets.embedded_builder("digits", tfds_dir)
    assert builder.info.splits["train"].num_examples == 1497
    assert builder.info.splits["test"].num_examples == 300
    train, test = digits_module.split_indices("train"), digits_module.split_indices("test")
    assert len(set(train) | set(test)) == 1797 and not set(train) & set(test)


def test_stored_images_are_sklearn_digits_scaled_to_uint8(tfds_dir):
    images = data.load_uint8_images(_config(tfds_dir), "test")
    assert images.shape == (300, 8, 8, 1) and images.dtype == np.uint8
    sk = load_digits()
    expected = np.round(sk.images[digits_module.split_indices("test")] * 255 / 16).astype(np.uint8)[..., None]
    assert sorted(map(bytes, images)) == sorted(map(bytes, expected))
    levels = np.round(np.arange(17) * 255 / 16)
    assert set(np.unique(images)) <= set(levels) and images.max() == 255 and images.min() == 0


def test_batch_shapes_dtypes_and_unit_range(tfds_dir):
    batch = data.build_dataset(_config(tfds_dir), "train", batch_size=BATCH, seed=0)[0]
    assert batch["image"].shape == (BATCH, 8, 8, 1) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (BATCH,) and batch["label"].dtype == np.int32
    assert batch["image"].min() == 0.0 and batch["image"].max() == 1.0


def test_centered_batches_span_minus_one_to_one(tfds_dir):
    config = _config(tfds_dir, centered=True)
    batch = data.build_dataset(config, "train", batch_size=BATCH, seed=0)[0]
    assert batch["image"].min() == -1.0 and batch["image"].max() == 1.0
    plain = data.build_dataset(_config(tfds_dir), "train", batch_size=BATCH, seed=0)[0]
    np.testing.assert_allclose(data.get_data_inverse_scaler(config)(batch["image"]), plain["image"], atol=1e-6)
    np.testing.assert_allclose(data.get_data_scaler(config)(plain["image"]), batch["image"], atol=1e-6)


def test_uncentered_scalers_are_identity():
    config = get_default_config()
    x = np.linspace(0, 1, 5)
    assert np.array_equal(data.get_data_scaler(config)(x), x)
    assert np.array_equal(data.get_data_inverse_scaler(config)(x), x)


def test_digits_dequantise_into_their_17_levels(tfds_dir):
    plain = data.build_dataset(_config(tfds_dir), "train", batch_size=BATCH, seed=3)[2]["image"]
    deq = data.build_dataset(_config(tfds_dir, uniform_dequantization=True), "train", batch_size=BATCH,
                             seed=3)[2]["image"]
    k = np.rint(plain * 16)  # ink level 0..16
    assert datasets.quantization_levels("digits") == 17
    assert np.array_equal(np.floor(deq * 17), k), "x = (k + u) / 17 with u in [0, 1)"
    u = deq * 17 - k
    assert 0.0 <= u.min() and u.max() < 1.0 and 0.4 < u.mean() < 0.6


def test_8_bit_images_dequantise_into_256_levels():
    preprocess = data.Preprocess(image_size=8, num_channels=1, uniform_dequantization=True)
    rng = np.random.default_rng(0)
    for v in (0, 1, 128, 255):
        x = preprocess({"image": np.full((8, 8, 1), v, np.uint8)}, rng)["image"]
        assert np.array_equal(np.floor(x * 256), np.full_like(x, v)), "x = (v + u) / 256 with u in [0, 1)"
    assert datasets.quantization_levels("cifar10") == 256


def test_same_seed_and_step_give_the_same_batch(tfds_dir):
    config = _config(tfds_dir, random_flip=True, uniform_dequantization=True)
    a = data.build_dataset(config, "train", batch_size=BATCH, seed=7)
    b = data.build_dataset(config, "train", batch_size=BATCH, seed=7)  # a "resumed" pipeline
    for step in (0, 5, 23, 1000):
        assert np.array_equal(a[step]["image"], b[step]["image"])
        assert np.array_equal(a[step]["label"], b[step]["label"])
    assert np.array_equal(a[5]["image"], a[5]["image"])


def test_different_seeds_give_different_batches(tfds_dir):
    a = data.build_dataset(_config(tfds_dir), "train", batch_size=BATCH, seed=0)[0]
    b = data.build_dataset(_config(tfds_dir), "train", batch_size=BATCH, seed=1)[0]
    assert not np.array_equal(a["image"], b["image"])


def test_each_epoch_visits_distinct_examples_and_reshuffles():
    ds = data.make_pipeline(_Indexed(100), data.Preprocess(8, 1), batch_size=32, seed=0)
    epoch0 = np.concatenate([_ids(ds[s]) for s in range(3)])  # 100 // 32 = 3 batches per epoch
    epoch1 = np.concatenate([_ids(ds[s]) for s in range(3, 6)])
    assert len(set(epoch0)) == 96 and len(set(epoch1)) == 96, "no example twice within an epoch"
    assert not np.array_equal(epoch0, epoch1), "each epoch is shuffled differently"
    assert np.array_equal(_ids(ds[3 + 300]), _ids(ds[3 + 300])), "indexing is stateless"


def test_unshuffled_evaluation_is_one_ordered_pass():
    ds = data.make_pipeline(_Indexed(100), data.Preprocess(8, 1), batch_size=32, seed=0, shuffle=False,
                            repeat=False)
    assert len(ds) == 3
    assert np.array_equal(np.concatenate([_ids(ds[s]) for s in range(3)]), np.arange(96))
    keep = data.make_pipeline(_Indexed(100), data.Preprocess(8, 1), batch_size=32, seed=0, shuffle=False,
                              repeat=False, drop_remainder=False)
    assert len(keep) == 4 and np.array_equal(_ids(keep[3]), np.arange(96, 100))


def test_flips_are_deterministic_and_flip_about_half(tfds_dir):
    plain = data.build_dataset(_config(tfds_dir), "train", batch_size=BATCH, seed=11)[4]["image"]
    flip_ds = data.build_dataset(_config(tfds_dir, random_flip=True), "train", batch_size=BATCH, seed=11)
    flipped = flip_ds[4]["image"]
    assert np.array_equal(flipped, flip_ds[4]["image"])
    same = np.all(flipped == plain, axis=(1, 2, 3))
    mirrored = np.all(flipped == plain[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(same | mirrored), "each image is either unchanged or mirrored left-right"
    n_flipped = np.sum(mirrored & ~same)
    assert 16 <= n_flipped <= 48, n_flipped


def test_flips_are_off_in_evaluation(tfds_dir):
    config = _config(tfds_dir, random_flip=True)
    a = data.build_dataset(config, "test", batch_size=100, seed=0, shuffle=False, evaluation=True)
    b = data.build_dataset(_config(tfds_dir), "test", batch_size=100, seed=0, shuffle=False, evaluation=True)
    assert len(a) == 3
    assert all(np.array_equal(a[i]["image"], b[i]["image"]) for i in range(3))


def test_batch_larger_than_split_is_rejected(tfds_dir):
    with pytest.raises(ValueError, match=re.escape("batch_size 400 exceeds the 300 examples of the split")):
        data.build_dataset(_config(tfds_dir), "test", batch_size=400, seed=0)


def test_images_are_resized_when_image_size_differs(tfds_dir):
    images = data.load_uint8_images(_config(tfds_dir, image_size=16), "test", max_examples=5)
    assert images.shape == (5, 16, 16, 1)


def test_prefetching_iterator_resumes_at_the_step_it_is_given(tfds_dir):
    ds = data.build_dataset(_config(tfds_dir, random_flip=True), "train", batch_size=BATCH, seed=5)
    it = data.iterate_batches(ds, start_step=21)
    for step in range(21, 27):  # crosses the epoch boundary at step 23
        batch = next(it)
        assert np.array_equal(batch["image"], ds[step]["image"])
        assert np.array_equal(batch["label"], ds[step]["label"])


@pytest.mark.parametrize("config_file", ["digits.py", "toy2d.py", "digits_demo.py"])
def test_data_shape_from_the_config_is_the_pipelines(config_file, tmp_path):
    import pathlib

    from configs import load_config

    config = load_config(pathlib.Path(__file__).resolve().parents[2] / "configs" / config_file)
    config.data.data_dir = str(tmp_path)
    batch = data.build_dataset(config, "train", batch_size=2, seed=0)[0]
    assert data.data_shape_of(config) == np.asarray(batch["image"]).shape[1:]
