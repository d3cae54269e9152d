"""The embedded data sets (digits, toy2d): built into a TFDS data_dir on first use, then read
with random access from their array_record files. Building needs neither network nor TensorFlow.
"""
import contextlib
import fcntl
import os
import pathlib

import tensorflow_datasets as tfds
from absl import logging

from training.datasets.digits import Digits
from training.datasets.toy2d import Toy2d

EMBEDDED: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {"digits": Digits, "toy2d": Toy2d}


def default_cache_dir() -> pathlib.Path:
    """$SCORE_SDE_DATA_DIR, else ~/.cache/score_sde_jax/tfds."""
    return pathlib.Path(os.environ.get("SCORE_SDE_DATA_DIR", "~/.cache/score_sde_jax/tfds")).expanduser()


@contextlib.contextmanager
def _exclusive(path: pathlib.Path):
    # Two processes building the same data set at once would race on TFDS's rename.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def embedded_builder(name: str, data_dir: pathlib.Path | None = None) -> tfds.core.DatasetBuilder:
    """The prepared builder of `name` ("digits", "toy2d" or "toy2d/<config>"), building it if needed."""
    base, _, config = name.partition("/")
    data_dir = default_cache_dir() if data_dir is None else pathlib.Path(data_dir)
    builder = EMBEDDED[base](config=config or None, data_dir=str(data_dir), file_format="array_record")
    if not pathlib.Path(builder.data_dir, "dataset_info.json").exists():
        with _exclusive(data_dir / f".{base}.lock"):
            logging.info("Building the embedded data set %s into %s (first use, no download)", name, data_dir)
            builder.download_and_prepare()
    return builder


def embedded_source(name: str, split: str, data_dir: pathlib.Path | None = None):
    """Random-access source of one split: `len`, `__getitem__` -> dict of numpy values."""
    return embedded_builder(name, data_dir).as_data_source(split=split)
