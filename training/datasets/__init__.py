"""Data sources: random-access collections of examples ({"image": uint8 [H, W, C] | "point": [2],
"label": int}) that `training.data` turns into batches.

Public API:
- `open_source(name, split, *, data_dir, image_size, num_channels)`: one entry point for the
  embedded TFDS data sets (`EMBEDDED`: "digits", "toy2d[/gmm8|checkerboard|moons]", built on first
  use), a user's folder of images ("image_folder", with `data_dir` the folder) and any TFDS
  catalog data set prepared locally (`CATALOG` short names such as "cifar10", "celeba", or a
  TFDS name).
- `quantization_levels(name)`: how many intensity levels the data set's images have (bins of
  dequantisation and bits/dim).
- Builders `Digits`, `Toy2d`; `default_cache_dir()`; `ImageFolder`; `center_crop_resize`.
"""
import pathlib

from training.datasets import digits
from training.datasets.catalog import CATALOG, CatalogEntry, catalog_source, default_data_dir
from training.datasets.digits import Digits
from training.datasets.embedded import EMBEDDED, default_cache_dir, embedded_builder, embedded_source
from training.datasets.image_folder import ImageFolder, center_crop_resize
from training.datasets.toy2d import Toy2d
from training.errors import UsageError

IMAGE_FOLDER = "image_folder"


def is_point_dataset(name: str) -> bool:
    """Whether `name` gives 2-D points ([B, 2]) rather than images."""
    return name.partition("/")[0] == "toy2d"


def quantization_levels(name: str) -> int:
    """Intensity levels of the images of `name`: 17 for the digits (ink counts 0..16 stored as
    uint8), 256 for 8-bit images. Dequantising 17-level data into 256 bins would leave the data on
    17 spikes of width 1/256 per pixel, which a density model sharpens without end."""
    return digits.NUM_LEVELS if name == "digits" else 256


def open_source(name: str, split: str, *, data_dir: str | pathlib.Path | None, image_size: int,
                num_channels: int):
    """Random-access source of split `split` of data set `name`, images at `image_size`.

    `data_dir`: the TFDS data_dir (None: `default_cache_dir()` for embedded data sets, TFDS's
    default for catalog ones), or the folder itself for "image_folder". Catalog images whose
    size differs from `image_size` are centre-cropped and resized by `training.data`.
    """
    data_dir = pathlib.Path(data_dir).expanduser() if data_dir else None
    if name.partition("/")[0] in EMBEDDED:
        return embedded_source(name, split, data_dir)
    if name == IMAGE_FOLDER:
        if data_dir is None:
            raise UsageError("data.dataset='image_folder' needs data.data_dir set to the folder of images")
        return ImageFolder(data_dir, split, image_size, num_channels)
    return catalog_source(name, split, data_dir)


__all__ = [
    "CATALOG", "EMBEDDED", "IMAGE_FOLDER", "CatalogEntry", "Digits", "ImageFolder", "Toy2d",
    "catalog_source", "center_crop_resize", "default_cache_dir", "default_data_dir",
    "embedded_builder", "embedded_source", "is_point_dataset", "open_source", "quantization_levels",
]
