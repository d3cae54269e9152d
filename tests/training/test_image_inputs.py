"""Image files become model pixels at full depth: 16-bit grey PNGs are rescaled, never clipped at
255 (data sets and `--input`); palette, RGBA and grey-alpha images are converted as documented;
upper-case `*.PNG` files are seen."""
import numpy as np
from PIL import Image

from training.datasets.image_folder import ImageFolder, convert_image, image_pixels
from training.inputs import png_files, read_raw

SIXTEEN = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000 + 7)  # up to 63007, far above 255


def test_sixteen_bit_grey_is_read_at_full_depth_and_rescaled(tmp_path):
    Image.fromarray(SIXTEEN).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as image:
        assert image.mode.startswith("I")
        np.testing.assert_allclose(image_pixels(image, 1)[..., 0], SIXTEEN / 65535.0, rtol=1e-6)
        rgb = image_pixels(image, 3)
        assert rgb.shape == (8, 8, 3) and np.array_equal(rgb[..., 0], rgb[..., 2])
        eight = np.asarray(convert_image(image, 1))
    np.testing.assert_array_equal(eight, np.round(SIXTEEN / 257.0).astype(np.uint8))
    assert len(np.unique(eight)) > 50  # clipping would have left almost only 255


def test_palette_alpha_and_grey_alpha_conversions():
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    palette.putpixel((1, 0), 1)
    np.testing.assert_array_equal(image_pixels(palette, 3)[0], [[1, 0, 0], [0, 0, 1]])
    rgba = Image.fromarray(np.array([[[10, 20, 30, 0]]], np.uint8), "RGBA")  # fully transparent
    np.testing.assert_allclose(image_pixels(rgba, 3)[0, 0] * 255, [10, 20, 30])  # alpha dropped, not composited
    grey_alpha = Image.fromarray(np.array([[[200, 5]]], np.uint8), "LA")
    np.testing.assert_allclose(image_pixels(grey_alpha, 1)[0, 0] * 255, [200])


def test_upper_case_png_files_and_sixteen_bit_images_in_folders(tmp_path):
    Image.fromarray(SIXTEEN).save(tmp_path / "A.PNG")
    Image.fromarray(np.full((8, 8), 9, np.uint8)).save(tmp_path / "b.png")
    assert [p.name for p in png_files(tmp_path)] == ["A.PNG", "b.png"]
    pixels, is_pixels = read_raw(tmp_path, "images", 1)
    assert is_pixels and pixels.shape == (2, 8, 8, 1) and pixels[0].max() > 0.9
    folder = ImageFolder(tmp_path, "train", image_size=8, num_channels=1)
    assert len(folder) == 2
    first = folder[0]["image"][..., 0]
    np.testing.assert_array_equal(first, np.round(SIXTEEN / 257.0).astype(np.uint8))
