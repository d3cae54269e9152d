"""A user's folder of images as a random-access data source (PIL; no TFDS, no TensorFlow)."""
import pathlib

import numpy as np
from PIL import Image

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


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
        self._mode = "L" if num_channels == 1 else "RGB"
        self._size = image_size

    def __len__(self) -> int:
        return len(self._files)

    def __getitem__(self, index: int) -> dict:
        with Image.open(self._files[index]) as image:
            image = center_crop_resize(image.convert(self._mode), self._size)
        array = np.asarray(image, dtype=np.uint8)
        return {"image": array.reshape(self._size, self._size, -1), "label": self._labels[index]}
