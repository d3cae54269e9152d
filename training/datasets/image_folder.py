"""A user's folder of images as a random-access data source (PIL; no TFDS, no TensorFlow), and
the one place where an image file's pixel format becomes the model's grey or RGB.

Conversions (`image_pixels`, `convert_image`): 16-bit grey (PIL modes I;16* and I) is read at
full depth and scaled by 1/65535 (to 8 bits by rounding value / 257 for data sets, which are
uint8); 16-bit colour PNGs are opened by PIL as 8-bit RGB (the high byte of each channel);
palette images (P) take their palette's colours; an alpha channel (RGBA, LA, PA) is dropped,
keeping the colour values as stored (not composited on a background); grey becomes RGB by
repetition and colour becomes grey by PIL's ITU-R 601 luma. File name extensions are matched
in any case (`*.PNG` too).
"""
import pathlib

import numpy as np
from PIL import Image

from training.errors import UsageError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_SIXTEEN_BIT_MAX = 65535.0


def _sixteen_bit_grey(image: Image.Image) -> np.ndarray:
    """The grey values of a 16-bit image in [0, 1], float32 `[H, W]`."""
    values = np.asarray(image, np.float32)
    if values.min(initial=0.0) < 0 or values.max(initial=0.0) > _SIXTEEN_BIT_MAX:
        raise ValueError(f"{image.mode} image holds values outside 0..65535; only 8- and 16-bit images are read")
    return values / _SIXTEEN_BIT_MAX


def image_pixels(image: Image.Image, num_channels: int) -> np.ndarray:
    """Pixels `[H, W, num_channels]` in [0, 1] (float32) at the file's full depth."""
    if image.mode in SIXTEEN_BIT_MODES:
        grey = _sixteen_bit_grey(image)[..., None]
        return grey if num_channels == 1 else np.repeat(grey, 3, axis=-1)
    pixels = np.asarray(image.convert("L" if num_channels == 1 else "RGB"), np.float32) / 255.0
    return pixels[..., None] if num_channels == 1 else pixels


def convert_image(image: Image.Image, num_channels: int) -> Image.Image:
    """The image as 8-bit grey (L) or RGB, 16-bit grey rescaled (never clipped at 255)."""
    if image.mode in SIXTEEN_BIT_MODES:
        image = Image.fromarray(np.round(_sixteen_bit_grey(image) * 255.0).astype(np.uint8), "L")
    return image.convert("L" if num_channels == 1 else "RGB")


def center_crop_resize(image: Image.Image, size: int, crop: int | None = None) -> Image.Image:
    """Centre-crop to a square (side `crop`, or the shorter side) and resize to `size` x `size`.

    Bicubic resampling; PIL filters over the whole support when shrinking, so down-sampling is
    anti-aliased (as the 2021 code's `tf.image.resize(..., antialias=True)`).
    """
    side = min(image.size) if crop is None else min(crop, *image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return image


class ImageFolder:
    """All images under `root` (recursively, sorted by path) as {"image": uint8 [S, S, C], "label"}.

    If `root/<split>` exists it is used for that split, otherwise `root` serves every split. The
    label is the index of the image's first sub-directory (sorted) below that root, 0 for images
    directly in it, as in the usual class-per-folder layout.
    """

    def __init__(self, root: str | pathlib.Path, split: str, image_size: int, num_channels: int):
        root = pathlib.Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {str(root)!r} does not exist")
        if (root / split).is_dir():
            root = root / split
        self._files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
        if not self._files:
            raise FileNotFoundError(f"image folder {str(root)!r} holds no images ({', '.join(EXTENSIONS)})")
        if num_channels not in (1, 3):
            raise ValueError(f"an image folder gives 1 (grey) or 3 (RGB) channels, not {num_channels}")
        classes = sorted({p.relative_to(root).parts[0] for p in self._files if p.parent != root})
        index = {name: i for i, name in enumerate(classes)}
        self._labels = [index.get(p.relative_to(root).parts[0], 0) if p.parent != root else 0
                        for p in self._files]
        self._channels = num_channels
        self._size = image_size

    def __len__(self) -> int:
        return len(self._files)

    def __getitem__(self, index: int) -> dict:
        try:
            with Image.open(self._files[index]) as image:
                image = center_crop_resize(convert_image(image, self._channels), self._size)
        except (OSError, ValueError, SyntaxError) as error:  # a corrupt or truncated file, an odd format
            raise UsageError(f"image {self._files[index]} cannot be read ({' '.join(str(error).split())}); "
                             "repair or remove it") from None
        array = np.asarray(image, dtype=np.uint8)
        return {"image": array.reshape(self._size, self._size, -1), "label": self._labels[index]}
