"""Inputs and outputs of the application modes (denoise, edit, encode, ...), checked at the
boundary so that a bad file is named before any model is built and nothing non-finite is written.

Inputs: a PNG file, a folder of PNGs (`*.png` in any case, sorted by name), or an .npz (key
`images`, else its only array; no pickled objects). PNG pixels are read at full depth
(`training.datasets.image_folder.image_pixels`) into [0, 1] and mapped through the config's data
scaler; .npz arrays are taken in the model's data range unless they are uint8. Empty,
non-numeric or non-finite arrays, unreadable images and images of mixed sizes are refused
naming the file (and the example). Outputs: `<name>.npz` in the model's range, `<name>.png` as a
grid in [0, 1] (image data only), `summary.json`; all written atomically.
"""
from __future__ import annotations

import io
import json
import os
import pathlib
import zipfile

import ml_collections
import numpy as np
from absl import logging
from PIL import Image

from training.data import data_shape_of, get_data_inverse_scaler, get_data_scaler
from training.datasets.image_folder import image_pixels
from training.errors import UsageError, UserError
from training.files import atomic_write_bytes, atomic_write_json
from training.logging import save_image_grid


def png_files(path: pathlib.Path) -> list[pathlib.Path]:
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not files:
        raise UsageError(f"input folder {path} holds no PNG files (*.png, any case)")
    return files


def read_npz(path: pathlib.Path, key: str) -> np.ndarray:
    """The array `key` of an .npz, else its only array (no pickled objects)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.keys())
            if key not in names and len(names) != 1:
                raise UsageError(f"{path} holds arrays {names}; expected one named {key!r} or a single array")
            return archive[key if key in names else names[0]]
    except UsageError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise UsageError(f"{path} is not a readable .npz of plain arrays: {' '.join(str(error).split())}") from None


def _read_pngs(path: pathlib.Path, channels: int) -> np.ndarray:
    images = []
    for file in png_files(path):
        try:
            with Image.open(file) as picture:
                images.append(image_pixels(picture, channels))
        except (OSError, ValueError, SyntaxError) as error:
            raise UsageError(f"image {file} cannot be read: {' '.join(str(error).split())}") from None
        if images[-1].shape != images[0].shape:
            raise UsageError(f"images in {path} differ in size: {file.name} is {images[-1].shape[:2]}, "
                             f"the first is {images[0].shape[:2]}; give images of one size")
    return np.stack(images)


def read_raw(path: pathlib.Path, key: str, channels: int) -> tuple[np.ndarray, bool]:
    """The raw array of an .npz (by `key`, else its only array) or of PNGs in [0, 1]; and whether
    it is pixel data ([0, 1] from PNG or uint8) rather than values in the model's range. Refuses
    empty, non-numeric and non-finite arrays, naming the file and the first bad example."""
    if not path.exists():
        raise UsageError(f"input {path} does not exist")
    if not path.is_dir() and path.suffix.lower() == ".npz":
        array = read_npz(path, key)
        if array.dtype.kind not in "fiu" or array.ndim == 0 or array.shape[0] == 0:
            raise UsageError(f"{path}: expected a non-empty numeric array [B, ...], got dtype {array.dtype} "
                             f"and shape {array.shape}")
        if array.dtype.kind == "f":
            bad = np.flatnonzero(~np.isfinite(array.reshape(array.shape[0], -1)).all(axis=1))
            if bad.size:
                raise UsageError(f"{path}: example {int(bad[0])} holds NaN or infinite values "
                                 f"({bad.size} bad example(s)); inputs must be finite")
        if array.dtype == np.uint8:
            return array.astype(np.float32) / 255.0, True
        return array.astype(np.float32), False
    return _read_pngs(path, channels), True


def load_array(path: str | pathlib.Path, config: ml_collections.ConfigDict, key: str = "images") -> np.ndarray:
    """Images `[B, H, W, C]` (or points `[B, d]`) in the model's data range, float32."""
    array, pixels = read_raw(pathlib.Path(path), key, config.data.num_channels)
    return get_data_scaler(config)(array) if pixels else array


def load_mask(path: str | pathlib.Path, config: ml_collections.ConfigDict) -> np.ndarray:
    """A 0/1 mask (1 = keep the input) from a PNG (white = keep) or an .npz (`mask`, values > 0.5)."""
    array, _ = read_raw(pathlib.Path(path), "mask", config.data.num_channels)
    return (array > 0.5).astype(np.float32)


def check_output_dir(out_dir: pathlib.Path) -> None:
    """Refuse, before any work, an output folder that is a file or cannot be created or written."""
    existing = out_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"output folder {out_dir} cannot be made: {existing} is a file; choose another --output_dir")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"output folder {out_dir} cannot be written ({existing} is read-only); "
                         "choose another --output_dir")


def check_shape(x: np.ndarray, config: ml_collections.ConfigDict, source: str | pathlib.Path = "input") -> None:
    """Inputs must be `[B, *data shape]` of the config (`data.image_size`, `data.num_channels`; `[B, 2]`
    for point data): checked before the checkpoint is read, so a wrong input is never blamed on it."""
    expected = data_shape_of(config)
    if x.shape[1:] != expected:
        raise UsageError(f"{source} holds an array of shape {x.shape} (examples {x.shape[1:]}), but the config's "
                         f"model takes [B, {', '.join(map(str, expected))}] (data.image_size, data.num_channels)")


def check_finite(name: str, x: np.ndarray) -> np.ndarray:
    """`x`, or an error naming the first example with a NaN or infinite value (never written)."""
    x = np.asarray(x)
    bad = np.flatnonzero(~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)) if x.ndim else \
        np.flatnonzero(~np.isfinite(x.reshape(1)))
    if bad.size:
        raise UserError(f"the {name} of input {int(bad[0])} ({bad.size} in all) came out NaN or infinite, "
                        "so nothing more was written; check the inputs and the checkpoint")
    return x


def save_array(out_dir: pathlib.Path, name: str, x: np.ndarray, config: ml_collections.ConfigDict) -> list[str]:
    """Write `name.npz` (model range) and, for images `[..., H, W, C]`, `name.png` (a grid); an
    array with a non-finite value is refused before anything of it is written."""
    x = check_finite(name, np.asarray(x, np.float32))
    written = [out_dir / f"{name}.npz"]
    buffer = io.BytesIO()
    np.savez(buffer, images=x)
    atomic_write_bytes(written[0], buffer.getvalue())
    if x.ndim >= 4:
        flat = x.reshape((-1,) + x.shape[-3:])
        written.append(save_image_grid(out_dir / f"{name}.png", get_data_inverse_scaler(config)(flat)))
    return [str(p) for p in written]


def write_summary(out_dir: pathlib.Path, summary: dict) -> dict:
    atomic_write_json(out_dir / "summary.json", summary)
    logging.info("%s", json.dumps(summary))
    return summary
