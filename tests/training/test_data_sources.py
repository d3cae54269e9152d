"""Data sources other than the digits: the 2-D toy builder, a folder of images, and TFDS catalog
data sets read from a local prepared copy (never downloaded)."""
import io
import pathlib
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from configs import get_default_config
from training import data, datasets
from training.datasets import toy2d


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


def _toy_config(tfds_dir, name="toy2d/gmm8"):
    config = get_default_config()
    config.data.dataset, config.data.data_dir, config.data.centered = name, str(tfds_dir), True
    config.model.name = "mlp"
    return config


def test_toy2d_batches_are_points_with_labels(tfds_dir):
    ds = data.build_dataset(_toy_config(tfds_dir), "train", batch_size=500, seed=0)
    batch = ds[0]
    assert batch["image"].shape == (500, 2) and batch["image"].dtype == np.float32
    assert batch["label"].dtype == np.int32
    assert np.array_equal(ds[3]["image"], data.build_dataset(_toy_config(tfds_dir), "train", batch_size=500,
                                                             seed=0)[3]["image"])
    assert datasets.embedded_builder("toy2d/gmm8", tfds_dir).info.splits["test"].num_examples == 2000


def test_toy2d_gmm8_points_follow_the_stated_mixture(tfds_dir):
    source = datasets.embedded_source("toy2d/gmm8", "train", tfds_dir)
    examples = [source[i] for i in range(len(source))]
    points = np.stack([e["point"] for e in examples]).astype(np.float64)
    labels = np.array([e["label"] for e in examples])
    weights, means, covs = toy2d.gmm8_parameters()
    for k in range(8):
        members = points[labels == k]
        assert abs(len(members) / len(points) - weights[k]) < 0.02
        np.testing.assert_allclose(members.mean(0), means[k], atol=0.02)
        np.testing.assert_allclose(np.cov(members.T), covs[k], atol=0.003)
    np.testing.assert_allclose(np.linalg.norm(means, axis=1), 2.0)


def test_point_data_scalers_are_identity_even_when_centered(tfds_dir):
    config = _toy_config(tfds_dir)
    x = np.array([[-3.0, 2.5]])
    assert np.array_equal(data.get_data_scaler(config)(x), x)
    assert np.array_equal(data.get_data_inverse_scaler(config)(x), x)


def test_checkerboard_points_lie_on_black_squares():
    points, labels = toy2d.sample("checkerboard", "test")
    assert points.shape == (2000, 2) and np.all(np.abs(points) <= 2)
    cells = np.floor(points + 2).astype(int)
    assert np.all(cells.sum(1) % 2 == 0)
    assert set(labels) == set(range(8))


def test_moons_have_two_labelled_halves():
    points, labels = toy2d.sample("moons", "train")
    assert points.shape == (10_000, 2) and set(labels) == {0, 1}
    assert np.all(np.abs(points) < 3)


def _write(path: pathlib.Path, array: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _striped(colour) -> np.ndarray:
    """8 rows x 12 columns: 2 red columns, 8 columns of `colour`, 2 blue columns."""
    image = np.zeros((8, 12, 3), np.uint8)
    image[:, :2] = (255, 0, 0)
    image[:, 2:10] = colour
    image[:, 10:] = (0, 0, 255)
    return image


def _folder_config(root, **data_changes):
    config = get_default_config()
    config.data.dataset, config.data.data_dir = "image_folder", str(root)
    config.data.num_channels = 3
    for key, value in data_changes.items():
        config.data[key] = value
    return config


def test_image_folder_centre_crops_and_labels_by_subfolder(tmp_path):
    _write(tmp_path / "cats" / "a.png", _striped((0, 200, 0)))
    _write(tmp_path / "cats" / "b.png", _striped((0, 100, 0)))
    _write(tmp_path / "dogs" / "c.jpg", _striped((0, 255, 0)))
    (tmp_path / "notes.txt").write_text("not an image")
    images = data.load_uint8_images(_folder_config(tmp_path), "train")
    assert images.shape == (3, 8, 8, 3)
    np.testing.assert_array_equal(images[0], np.broadcast_to([0, 200, 0], (8, 8, 3)))
    np.testing.assert_array_equal(images[1], np.broadcast_to([0, 100, 0], (8, 8, 3)))
    source = datasets.open_source("image_folder", "train", data_dir=tmp_path, image_size=8, num_channels=3)
    assert [source[i]["label"] for i in range(3)] == [0, 0, 1]


def test_image_folder_resizes_and_batches(tmp_path):
    for i in range(5):
        _write(tmp_path / f"{i}.png", np.full((20, 30, 3), 40 * i, np.uint8))
    config = _folder_config(tmp_path, image_size=4, centered=True)
    batch = data.build_dataset(config, "train", batch_size=2, seed=0)[1]
    assert batch["image"].shape == (2, 4, 4, 3) and batch["label"].tolist() == [0, 0]
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1


def test_image_folder_grey_and_split_subfolders(tmp_path):
    _write(tmp_path / "train" / "x.png", np.full((8, 8, 3), 90, np.uint8))
    _write(tmp_path / "test" / "y.png", np.full((8, 8, 3), 30, np.uint8))
    _write(tmp_path / "test" / "z.png", np.full((8, 8, 3), 60, np.uint8))
    test = data.load_uint8_images(_folder_config(tmp_path, num_channels=1), "test")
    assert test.shape == (2, 8, 8, 1) and test[:, 0, 0, 0].tolist() == [30, 60]


def test_image_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"image folder {str(tmp_path / 'nope')!r} does not exist")):
        data.build_dataset(_folder_config(tmp_path / "nope"), "train", batch_size=1, seed=0)
    with pytest.raises(FileNotFoundError, match=re.escape(f"image folder {str(tmp_path)!r} holds no images")):
        data.build_dataset(_folder_config(tmp_path), "train", batch_size=1, seed=0)
    with pytest.raises(ValueError, match="needs data.data_dir set to the folder of images"):
        data.build_dataset(_folder_config(""), "train", batch_size=1, seed=0)


def test_missing_catalog_dataset_names_it_the_data_dir_and_the_prepare_command(tmp_path):
    config = get_default_config()
    config.data.dataset, config.data.data_dir, config.data.num_channels = "cifar10", str(tmp_path), 3
    message = (f"TFDS dataset 'cifar10' is not prepared in data_dir {str(tmp_path)!r} (no "
               "cifar10/<version>/dataset_info.json there); nothing is downloaded at training time. "
               "Prepare it once with: pip install 'score-sde-jax[tfds-prepare]' && tfds build cifar10 "
               f"--data_dir={tmp_path} --file_format=array_record")
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(message)}$"):
        data.build_dataset(config, "train", batch_size=8, seed=0)


def test_catalog_short_names_map_to_tfds_names(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape("TFDS dataset 'celeb_a' is not prepared")):
        datasets.catalog_source("celeba", "train", tmp_path)


def test_prepared_catalog_dataset_is_read_from_disk(tmp_path):
    # Any prepared array_record data set is read through the catalog path, here the digits.
    datasets.embedded_builder("digits", tmp_path)
    source = datasets.catalog_source("digits", "test", tmp_path)
    assert len(source) == 300 and source[0]["image"].shape == (8, 8, 1)
    with pytest.raises(ValueError, match=re.escape("TFDS dataset 'digits' has no split 'validation'; "
                                                   "it has ['test', 'train']")):
        datasets.catalog_source("digits", "validation", tmp_path)


def test_catalog_dataset_in_tfrecord_format_asks_for_array_record(tmp_path):
    builder = datasets.embedded_builder("digits", tmp_path)
    info = pathlib.Path(builder.data_dir) / "dataset_info.json"
    info.write_text(info.read_text().replace('"fileFormat": "array_record"', '"fileFormat": "tfrecord"'))
    with pytest.raises(ValueError, match=re.escape(
            f"TFDS dataset 'digits' in {str(tmp_path)!r} is stored as tfrecord; random access without "
            "TensorFlow needs array_record. Rebuild it with: ")):
        datasets.catalog_source("digits", "test", tmp_path)


class TinyPngImages(tfds.core.GeneratorBasedBuilder):
    """Stands in for a catalog image data set (cifar10, celeb_a): PNG-encoded Image features."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        # DatasetInfo directly: dataset_info_from_configs reads metadata from the builder's package,
        # and a test module is not a package.
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)), "label": tfds.features.ClassLabel(num_classes=4)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(4):
            buffer = io.BytesIO()
            Image.fromarray(_striped((0, 50 * i, 0))).save(buffer, format="PNG")
            yield i, {"image": buffer.getvalue(), "label": i}  # bytes: encoding needs no TensorFlow


def test_catalog_png_images_decode_without_tensorflow_and_are_centre_cropped(tmp_path):
    TinyPngImages(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    config = get_default_config()
    config.data.dataset, config.data.data_dir, config.data.num_channels = "tiny_png_images", str(tmp_path), 3
    config.data.image_size = 4
    images = data.load_uint8_images(config, "train")
    assert images.shape == (4, 4, 4, 3)
    greens = sorted(int(image[0, 0, 1]) for image in images)
    assert greens == [0, 50, 100, 150]
    assert np.all(images[..., 0] == 0) and np.all(images[..., 2] == 0), "red/blue borders are cropped away"
