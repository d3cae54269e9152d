"""Batches for training and evaluation: grain `MapDataset` pipelines indexable by step.

`build_dataset(config, split, batch_size=..., seed=...)[step]` is the batch of training step
`step`, a pure function of (data set, seed, step): resuming at step k reads exactly the batches an
uninterrupted run would have read. Per epoch the examples are shuffled with a seed derived from
(seed, epoch) and cut into `len // batch_size` batches (the remainder of each epoch is dropped);
random flips and dequantisation noise come from a generator seeded by (seed, example position).

Preprocessing follows the 2021 score-SDE code: uint8 -> [0, 1]; optional uniform dequantisation
x = (k + u) / L, u ~ U[0, 1) (Theis et al. 2016; as in Song et al. 2021 for bits/dim) with L the
data set's intensity levels (256, or 17 for the digits: `datasets.quantization_levels`); then the
data scaler maps to [-1, 1] when `data.centered`. Batches come out already scaled.
"""
import dataclasses
import pathlib
from collections.abc import Callable, Iterator

import grain
import ml_collections
import numpy as np

from training import datasets
from training.errors import UsageError


def center(x):
    """[0, 1] -> [-1, 1]."""
    return x * 2.0 - 1.0


def uncenter(x):
    """[-1, 1] -> [0, 1]."""
    return (x + 1.0) / 2.0


def _identity(x):
    return x


def get_data_scaler(config: ml_collections.ConfigDict) -> Callable[[np.ndarray], np.ndarray]:
    """Data in [0, 1] -> the model's range: [-1, 1] if `config.data.centered`, else unchanged.
    Identity for 2-D point data, which are real-valued already."""
    if config.data.centered and not datasets.is_point_dataset(config.data.dataset):
        return center
    return _identity


def get_data_inverse_scaler(config: ml_collections.ConfigDict) -> Callable[[np.ndarray], np.ndarray]:
    """Inverse of `get_data_scaler`: the model's range -> [0, 1] (identity for point data)."""
    if config.data.centered and not datasets.is_point_dataset(config.data.dataset):
        return uncenter
    return _identity


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """Per-example preprocessing of one source example into {"image", "label": int32}.

    Images: uint8 [H, W, C] -> centre-crop/resize to `image_size` if needed (side `crop` first),
    optional horizontal flip (p = 1/2), [0, 1] (or dequantised into `levels` bins: the uint8 value
    v is level k = round(v (levels - 1) / 255)), then [-1, 1] if `centered`.
    Points (2-D toy data, stored under "point"): float32 [2], passed through.
    """

    image_size: int
    num_channels: int
    random_flip: bool = False
    uniform_dequantization: bool = False
    centered: bool = False
    crop: int | None = None
    points: bool = False
    levels: int = 256

    @property
    def is_random(self) -> bool:
        return not self.points and (self.random_flip or self.uniform_dequantization)

    def select(self, example: dict) -> dict:
        label = np.int32(example.get("label", 0))
        if self.points:
            return {"image": np.asarray(example["point"], np.float32), "label": label}
        image = np.asarray(example["image"])
        if image.ndim == 2:
            image = image[..., None]
        if image.shape[:2] != (self.image_size, self.image_size):
            image = _resize(image, self.image_size, self.crop)
        if image.shape[-1] != self.num_channels:
            raise UsageError(f"the data set's images have {image.shape[-1]} channels but "
                             f"data.num_channels is {self.num_channels}")
        return {"image": image, "label": label}

    def __call__(self, example: dict, rng: np.random.Generator | None = None) -> dict:
        example = self.select(example)
        if self.points:
            return example
        image = example["image"]
        if self.random_flip and rng.random() < 0.5:
            image = image[:, ::-1]
        if self.uniform_dequantization:
            level = image.astype(np.float32)
            if self.levels != 256:
                level = np.round(level * ((self.levels - 1) / 255.0))
            image = (level + rng.random(image.shape, dtype=np.float32)) / float(self.levels)
        else:
            image = image.astype(np.float32) / 255.0
        if self.centered:
            image = center(image)
        return {"image": image, "label": example["label"]}


def _resize(image: np.ndarray, size: int, crop: int | None) -> np.ndarray:
    from PIL import Image

    grey = image.shape[-1] == 1
    pil = Image.fromarray(image[..., 0] if grey else image)
    out = np.asarray(datasets.center_crop_resize(pil, size, crop), np.uint8)
    return out[..., None] if grey else out


def make_pipeline(source, preprocess: Preprocess, *, batch_size: int, seed: int, shuffle: bool = True,
                  repeat: bool = True, drop_remainder: bool = True, num_hosts: int = 1,
                  host_index: int = 0) -> grain.MapDataset:
    """Batches of `source` (anything with `len` and `__getitem__`) as a grain MapDataset.

    Returns a dataset whose item `step` is {"image": float32 [B, H, W, C] (or [B, 2] for points),
    "label": int32 [B]}; infinite (each epoch reshuffled) when `repeat`, else one pass.

    With `num_hosts = P > 1` (and `drop_remainder`) item `step` is only rows
    `[host_index * B / P, (host_index + 1) * B / P)` of that global batch, and only those examples
    are read and preprocessed: the global batch, its shuffle and its per-example randomness are
    the same whatever P (each example's randomness is seeded by its global position).
    """
    if batch_size <= 0:
        raise UsageError(f"batch_size must be positive, got {batch_size}")
    if num_hosts < 1 or not 0 <= host_index < num_hosts or batch_size % num_hosts:
        raise UsageError(f"cannot split a batch of {batch_size} over {num_hosts} hosts as host {host_index}")
    if num_hosts > 1 and not drop_remainder:
        raise UsageError("per-host batches need drop_remainder=True (every host reads equal slices)")
    if drop_remainder and len(source) < batch_size:
        raise UsageError(f"batch_size {batch_size} exceeds the {len(source)} examples of the split")
    # Independent 32-bit seeds for the shuffle and the per-example randomness.
    shuffle_seed, example_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
    ds = grain.MapDataset.source(source)
    if shuffle:
        ds = ds.shuffle(seed=shuffle_seed)
    if preprocess.is_random:
        ds = ds.random_map(preprocess, seed=example_seed)
    else:
        ds = ds.map(preprocess)
    if num_hosts == 1:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    else:
        # Global batch j is the host slices j * P, ..., j * P + P - 1 of `B / P` consecutive rows;
        # grain's slice and batch carry the epoch on past the first, so `repeat` still reshuffles.
        host_batch = batch_size // num_hosts
        per_epoch = len(source) // batch_size
        ds = ds.batch(host_batch, drop_remainder=True)[host_index:per_epoch * num_hosts:num_hosts]
    return ds.repeat() if repeat else ds


def preprocess_from_config(config: ml_collections.ConfigDict, *, evaluation: bool = False) -> Preprocess:
    """The `Preprocess` a config asks for; evaluation never flips (as in the 2021 code)."""
    data = config.data
    return Preprocess(
        image_size=data.image_size,
        num_channels=data.num_channels,
        random_flip=data.random_flip and not evaluation,
        uniform_dequantization=data.uniform_dequantization,
        centered=data.centered,
        crop=datasets.CATALOG[data.dataset].crop if data.dataset in datasets.CATALOG else None,
        points=datasets.is_point_dataset(data.dataset),
        levels=datasets.quantization_levels(data.dataset),
    )


class InMemory:
    """A source read once into a list: per-example reads from array_record cost ~0.2 ms, which
    dominates the step time of the small embedded models."""

    def __init__(self, source):
        indices = list(range(len(source)))
        self._examples = source.__getitems__(indices) if hasattr(source, "__getitems__") else [
            source[i] for i in indices]

    def __len__(self) -> int:
        return len(self._examples)

    def __getitem__(self, index: int) -> dict:
        return self._examples[index]


def open_split(config: ml_collections.ConfigDict, split: str):
    """The random-access source of `split` of `config.data.dataset` (in memory if embedded)."""
    data = config.data
    source = datasets.open_source(data.dataset, split, data_dir=data.data_dir or None,
                                  image_size=data.image_size, num_channels=data.num_channels)
    return InMemory(source) if data.dataset.partition("/")[0] in datasets.EMBEDDED else source


def build_dataset(config: ml_collections.ConfigDict, split: str, *, batch_size: int, seed: int,
                  shuffle: bool = True, evaluation: bool = False, drop_remainder: bool = True,
                  num_hosts: int = 1, host_index: int = 0) -> grain.MapDataset:
    """Batches of `split` of the config's data set: `ds[step]` is the batch of step `step`.

    Training (`evaluation=False`): infinite, reshuffled every epoch. Evaluation: one pass, no
    flips; pass `shuffle=False` for the data set's order. Each batch is {"image": float32
    [B, H, W, C] scaled as the model expects ([B, 2] for toy2d), "label": int32 [B]}; with
    `num_hosts > 1`, this host's `B / num_hosts` rows of it (`make_pipeline`).
    """
    return make_pipeline(open_split(config, split), preprocess_from_config(config, evaluation=evaluation),
                         batch_size=batch_size, seed=seed, shuffle=shuffle, repeat=not evaluation,
                         drop_remainder=drop_remainder, num_hosts=num_hosts, host_index=host_index)


def iterate_batches(ds: grain.MapDataset, start_step: int = 0, *, num_threads: int = 2,
                    prefetch: int = 4, num_workers: int = 0) -> Iterator[dict]:
    """Yield `ds[start_step]`, `ds[start_step + 1]`, ... read ahead while the caller computes.

    Threads (`num_threads`, `prefetch` batches) run in-process. `num_workers > 0` adds grain worker
    processes, which need absl flags parsed and the entry point under `if __name__ == "__main__"`.
    """
    read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
    it = ds[start_step:].to_iter_dataset(read)
    if num_workers > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return iter(it)


def data_shape_of(config: ml_collections.ConfigDict) -> tuple[int, ...]:
    """One example's shape as the config describes it: `[2]` for 2-D point data, else
    `[image_size, image_size, num_channels]` (what the pipeline resizes every image to)."""
    if datasets.is_point_dataset(config.data.dataset):
        return (2,)
    return (config.data.image_size, config.data.image_size, config.data.num_channels)


def load_uint8_images(config: ml_collections.ConfigDict, split: str, *,
                      max_examples: int | None = None) -> np.ndarray:
    """The first `max_examples` images of `split` in stored order, uint8 [N, H, W, C] at the config's
    image size (e.g. for FID reference statistics). Not defined for 2-D point data."""
    if datasets.is_point_dataset(config.data.dataset):
        raise UsageError(f"data set {config.data.dataset!r} holds 2-D points, not images")
    source = open_split(config, split)
    select = preprocess_from_config(config, evaluation=True).select
    n = len(source) if max_examples is None else min(max_examples, len(source))
    return np.stack([select(source[i])["image"] for i in range(n)])


def default_data_dir(dataset: str) -> pathlib.Path:
    """Where a data set is looked for when `data.data_dir` is empty."""
    if dataset.partition("/")[0] in datasets.EMBEDDED:
        return datasets.default_cache_dir()
    return datasets.default_data_dir()
