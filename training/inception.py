"""The Inception-v3 of FID (Heusel et al. 2017) and Inception Score, with weights from a local file.

The network is the 2015 TensorFlow graph that the FID and IS literature uses, in the layout of
pytorch-fid's `FIDInceptionV3` (torchvision's Inception-v3 with 1008 classes, no auxiliary head,
and the TF graph's pooling quirks: average pools that do not count padding, a max pool in the
last block). Its parameters are named like that state dict, so a user who holds the weights as
`pt_inception-2015-12-05-6726825d.pth` converts them once with
`scripts/convert_inception_weights.py` into an `.npz` of plain arrays (no pickle), which
`load_weights` reads and checks key by key and shape by shape. No weights ship or download here.

Images in [0, 1] are resized to 299x299 (bilinear, half-pixel centres, no antialiasing, as
torch's `interpolate(..., align_corners=False)`), grey images repeated to RGB, and scaled to
[-1, 1]. Features are the 2048 average-pooled activations ("pool3"); logits are the 1008-way
classifier on them, for the Inception Score.
"""
from __future__ import annotations

import pathlib
import zipfile
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from training.metrics import fingerprint_of
from training.sharding import batch_sharding, make_mesh, replicated

FEATURE_DIM = 2048
NUM_CLASSES = 1008
IMAGE_SIZE = 299
MIN_IMAGE_SIZE = 75  # the smallest input whose feature maps stay non-empty through the stem and reductions


class BasicConv(nn.Module):
    """Convolution without bias, batch normalisation (eps 1e-3, running statistics), ReLU."""

    features: int
    kernel: tuple[int, int]
    strides: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x):
        pad_h, pad_w = self.padding
        x = nn.Conv(self.features, self.kernel, strides=self.strides, padding=((pad_h, pad_h), (pad_w, pad_w)),
                    use_bias=False, name="conv")(x)
        return nn.relu(nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x))


def _avg_pool_same(x):
    # The TF graph averages only over the in-image part of each 3x3 window.
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_reduce(x):
    return nn.max_pool(x, (3, 3), strides=(2, 2))


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(64, (1, 1), name="branch1x1")(x)
        b5 = BasicConv(48, (1, 1), name="branch5x5_1")(x)
        b5 = BasicConv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = BasicConv(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_same(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(384, (3, 3), strides=2, name="branch3x3")(x)
        bd = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = BasicConv(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_reduce(x)], axis=-1)


class InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c7 = self.channels_7x7
        b1 = BasicConv(192, (1, 1), name="branch1x1")(x)
        b7 = BasicConv(c7, (1, 1), name="branch7x7_1")(x)
        b7 = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = BasicConv(c7, (1, 1), name="branch7x7dbl_1")(x)
        bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = BasicConv(192, (1, 1), name="branch_pool")(_avg_pool_same(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(192, (1, 1), name="branch3x3_1")(x)
        b3 = BasicConv(320, (3, 3), strides=2, name="branch3x3_2")(b3)
        b7 = BasicConv(192, (1, 1), name="branch7x7x3_1")(x)
        b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_reduce(x)], axis=-1)


class InceptionE(nn.Module):
    """`max_pool`: the graph's last block pools its side branch by max, the one before by average."""

    max_pool: bool = False

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(320, (1, 1), name="branch1x1")(x)
        b3 = BasicConv(384, (1, 1), name="branch3x3_1")(x)
        b3 = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                              BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
        bd = BasicConv(448, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                              BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
        if self.max_pool:
            pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
        else:
            pooled = _avg_pool_same(x)
        bp = BasicConv(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
    """`x [B, H, W, 3]` in [-1, 1] (H, W >= 75) -> `(pool3 features [B, 2048], logits [B, 1008])`."""

    @nn.compact
    def __call__(self, x):
        x = BasicConv(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool_reduce(x)
        x = BasicConv(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool_reduce(x)
        x = InceptionA(32, name="Mixed_5b")(x)
        x = InceptionA(64, name="Mixed_5c")(x)
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        x = InceptionC(128, name="Mixed_6b")(x)
        x = InceptionC(160, name="Mixed_6c")(x)
        x = InceptionC(160, name="Mixed_6d")(x)
        x = InceptionC(192, name="Mixed_6e")(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(name="Mixed_7b")(x)
        x = InceptionE(max_pool=True, name="Mixed_7c")(x)
        features = jnp.mean(x, axis=(1, 2))
        return features, nn.Dense(NUM_CLASSES, name="fc")(features)


Variables = dict


def init_variables(rng: jax.Array) -> Variables:
    """Randomly initialised `{"params", "batch_stats"}` (for tests and the converter's checks)."""
    return FIDInceptionV3().init(rng, jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), jnp.float32))


# The state-dict name of each leaf: (collection, flax leaf name) -> (torch suffix, from torch layout).
_LEAVES: dict[tuple[str, str], tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    ("params", "kernel"): ("weight", lambda w: np.transpose(w, (2, 3, 1, 0)) if w.ndim == 4 else w.T),
    ("params", "bias"): ("bias", lambda b: b),
    ("params", "scale"): ("weight", lambda s: s),
    ("batch_stats", "mean"): ("running_mean", lambda m: m),
    ("batch_stats", "var"): ("running_var", lambda v: v),
}


def _torch_names(variables: Variables) -> dict[str, tuple[tuple, Callable]]:
    """state-dict key -> (path into `variables`, conversion from the torch layout)."""
    names = {}
    for collection in ("params", "batch_stats"):
        for path, _ in jax.tree_util.tree_flatten_with_path(variables[collection])[0]:
            keys = tuple(p.key for p in path)
            suffix, convert = _LEAVES[(collection, keys[-1])]
            names[".".join(keys[:-1] + (suffix,))] = ((collection,) + keys, convert)
    return names


def _set(tree: dict, path: tuple, value) -> None:
    for key in path[:-1]:
        tree = tree[key]
    tree[path[-1]] = value


def _get(tree: dict, path: tuple):
    for key in path:
        tree = tree[key]
    return tree


def variables_from_state_dict(arrays: dict[str, np.ndarray], *, source: str = "weights") -> Variables:
    """Flax variables from arrays named and laid out as pytorch-fid's `FIDInceptionV3` state dict.

    Raises a `ValueError` naming every missing or unexpected key and every wrong shape (BatchNorm's
    `num_batches_tracked` counters are ignored).
    """
    template = jax.eval_shape(init_variables, jax.random.key(0))
    names = _torch_names(template)
    given = {k: v for k, v in arrays.items() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(names) - set(given))
    unexpected = sorted(set(given) - set(names))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    variables = jax.tree.map(lambda leaf: leaf, template)  # a fresh nested dict to fill in
    for name, (path, convert) in names.items():
        if name not in given:
            continue
        value = convert(np.asarray(given[name], np.float32))
        expected = _get(template, path).shape
        if value.shape != expected:
            problems.append(f"{name}: shape {tuple(np.shape(given[name]))} does not convert to {expected}")
            continue
        _set(variables, path, jnp.asarray(value))
    if problems:
        raise ValueError(f"{source} is not an FID Inception-v3 state dict: " + "; ".join(problems))
    return variables


def state_dict_from_variables(variables: Variables) -> dict[str, np.ndarray]:
    """The inverse of `variables_from_state_dict` (torch layout, float32)."""
    return {name: _to_torch_layout(np.asarray(_get(variables, path), np.float32))
            for name, (path, _) in _torch_names(variables).items()}


def _to_torch_layout(value: np.ndarray) -> np.ndarray:
    """HWIO convolution kernels to OIHW, dense [in, out] to [out, in]."""
    if value.ndim == 4:
        return np.transpose(value, (3, 2, 0, 1))
    return value.T if value.ndim == 2 else value


def state_dict_shapes() -> dict[str, tuple[int, ...]]:
    """Each state-dict key and its shape in the torch layout (what a weights file must hold)."""
    template = jax.eval_shape(init_variables, jax.random.key(0))
    return {name: _to_torch_layout(np.empty(_get(template, path).shape, np.int8)).shape
            for name, (path, _) in _torch_names(template).items()}


def load_weights(path: str | pathlib.Path) -> Variables:
    """Variables from an `.npz` written by `scripts/convert_inception_weights.py` (or `np.savez` of
    the state dict); object arrays are refused, so nothing in the file is unpickled."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Inception weights file {str(path)!r} does not exist; convert pytorch-fid's "
                                "pt_inception-2015-12-05-6726825d.pth with scripts/convert_inception_weights.py")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise ValueError(f"cannot read Inception weights {str(path)!r} as an .npz of plain arrays: {error}") from error
    return variables_from_state_dict(arrays, source=repr(str(path)))


def preprocess(images: jax.Array, image_size: int = IMAGE_SIZE) -> jax.Array:
    """`[B, H, W, C]` in [0, 1], C in {1, 3} -> `[B, image_size, image_size, 3]` in [-1, 1]."""
    if images.shape[-1] == 1:
        images = jnp.repeat(images, 3, axis=-1)
    size = (images.shape[0], image_size, image_size, 3)
    images = jax.image.resize(images, size, "bilinear", antialias=False)
    return 2.0 * images - 1.0


class InceptionFeatureExtractor:
    """`FeatureExtractor` of FID / KID (pool3, 2048 features) that also gives IS logits.

    `image_size` is 299 for figures comparable with the literature; smaller (>= 75) only to save
    time in tests. Each batch is split over the devices of `mesh` (default: this process's
    devices), the weights replicated; `batch_size` is rounded up to a multiple of their number.
    """

    name = "inception"

    def __init__(self, variables: Variables, *, batch_size: int = 100, image_size: int = IMAGE_SIZE,
                 mesh: Mesh | None = None):
        if image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"image_size must be >= {MIN_IMAGE_SIZE}, got {image_size}")
        self.fingerprint = fingerprint_of("fid-inception-v3", str(image_size), variables)
        mesh = make_mesh(jax.local_devices()) if mesh is None else mesh
        self.batch_size = batch_size + (-batch_size % mesh.size)
        self._images_sharding = batch_sharding(mesh)
        self.variables = jax.device_put(variables, replicated(mesh))
        self._apply = jax.jit(lambda v, x: FIDInceptionV3().apply(v, preprocess(x, image_size)))

    @classmethod
    def from_file(cls, path: str | pathlib.Path, **kwargs) -> InceptionFeatureExtractor:
        return cls(load_weights(path), **kwargs)

    def features_and_logits(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """pool3 features `[N, 2048]` and logits `[N, 1008]` of images `[N, H, W, C]` in [0, 1]."""
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(f"the Inception feature extractor takes [N, H, W, 1 or 3] images, got {images.shape}")
        features, logits = [], []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            # Pad the last chunk to the batch size so one compiled program serves every chunk.
            padded = np.concatenate([chunk, np.zeros((self.batch_size - len(chunk),) + chunk.shape[1:], chunk.dtype)])
            f, lg = self._apply(self.variables, jax.device_put(padded, self._images_sharding))
            features.append(np.asarray(f)[:len(chunk)])
            logits.append(np.asarray(lg)[:len(chunk)])
        return np.concatenate(features), np.concatenate(logits)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.features_and_logits(images)[0]
