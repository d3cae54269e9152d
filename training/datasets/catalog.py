"""TFDS catalog data sets (cifar10, celeb_a, lsun, ...) read from a local, already prepared copy.

Nothing here downloads: `tfds.data_source` would try to, so a prepared version directory is
located on disk and opened with `tfds.builder_from_directory`. Preparing a catalog data set needs
TensorFlow (the optional ``tfds-prepare`` extra) and the array_record file format.
"""
import dataclasses
import pathlib

import tensorflow_datasets as tfds


@dataclasses.dataclass(frozen=True)
class CatalogEntry:
    """How a config's `data.dataset` name maps to TFDS: `tfds_name` and an optional centre crop
    (pixels, applied before resizing; the 2021 code crops CelebA to 140x140)."""

    tfds_name: str
    crop: int | None = None


CATALOG: dict[str, CatalogEntry] = {
    "cifar10": CatalogEntry("cifar10"),
    "svhn": CatalogEntry("svhn_cropped"),
    "celeba": CatalogEntry("celeb_a", crop=140),
    "celebahq256": CatalogEntry("celeb_a_hq/256"),
    "celebahq1024": CatalogEntry("celeb_a_hq/1024"),
    "lsun_church": CatalogEntry("lsun/church_outdoor"),
    "lsun_bedroom": CatalogEntry("lsun/bedroom"),
}
"""Short names used by the configs; any other name is passed to TFDS as it is (e.g. "mnist")."""


def default_data_dir() -> pathlib.Path:
    """TFDS's own default: $TFDS_DATA_DIR or ~/tensorflow_datasets."""
    return pathlib.Path(tfds.core.constants.DATA_DIR).expanduser()


def prepare_command(tfds_name: str, data_dir: pathlib.Path) -> str:
    return f"pip install 'score-sde-jax[tfds-prepare]' && tfds build {tfds_name} --data_dir={data_dir} --file_format=array_record"


def _version_key(path: pathlib.Path) -> tuple[int, ...]:
    return tuple(int(p) for p in path.name.split(".") if p.isdigit())


def prepared_dir(tfds_name: str, data_dir: pathlib.Path) -> pathlib.Path:
    """The newest `<data_dir>/<name>[/<config>]/<version>` holding a dataset_info.json.

    Raises FileNotFoundError naming the data set, the data_dir and the command that prepares it.
    """
    root = data_dir / tfds_name
    versions = sorted((p.parent for p in root.glob("*/dataset_info.json")), key=_version_key)
    if not versions:
        raise FileNotFoundError(
            f"TFDS dataset {tfds_name!r} is not prepared in data_dir {str(data_dir)!r} (no "
            f"{tfds_name}/<version>/dataset_info.json there); nothing is downloaded at training "
            f"time. Prepare it once with: {prepare_command(tfds_name, data_dir)}")
    return versions[-1]


def catalog_source(name: str, split: str, data_dir: pathlib.Path | None = None):
    """Random-access source (`len`, `__getitem__` -> {"image": uint8 [H, W, C], ...}) of a split."""
    entry = CATALOG.get(name, CatalogEntry(name))
    data_dir = default_data_dir() if data_dir is None else data_dir
    builder = tfds.builder_from_directory(str(prepared_dir(entry.tfds_name, data_dir)))
    file_format = getattr(builder.info.file_format, "value", builder.info.file_format)
    if file_format != "array_record":
        raise ValueError(
            f"TFDS dataset {entry.tfds_name!r} in {str(data_dir)!r} is stored as "
            f"{file_format}; random access without TensorFlow needs array_record. "
            f"Rebuild it with: {prepare_command(entry.tfds_name, data_dir)}")
    if split not in builder.info.splits:
        raise ValueError(f"TFDS dataset {entry.tfds_name!r} has no split {split!r}; "
                         f"it has {sorted(builder.info.splits)}")
    return builder.as_data_source(split=split)
