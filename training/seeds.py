"""Sampling by seed: sample k of a run is a function of the run's key and its seed k alone
(`samplers.common`), so a seed range can be drawn in any batch size, on any device count, in pieces,
and a killed job resumes where it stopped (as EDM's `generate.py --seeds`).

Each sample is written once, atomically, as `<out_dir>/<seed // 1000 * 1000:06d>/<seed:06d>.npy`
(float32, data space: [0, 1] for images); seeds whose file exists are skipped. `sampling.json` in
`out_dir` records the seeds, sampler, nfe and checkpoint step of the run.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
from collections.abc import Callable

import jax
import numpy as np

from training.errors import UsageError

_PART = re.compile(r"^(\d+)(?:-(\d+))?$")


class SeedsError(UsageError):
    """Bad seeds, or an output directory that holds another run's samples."""


def parse_seeds(text: str) -> list[int]:
    """`"0-49999"`, `"1,5,7"` or a mix (`"0-9,100-109"`) -> the seeds in order, without repeats.

    Raises SeedsError naming the bad part (negative numbers, reversed ranges, empty text).
    """
    seeds: list[int] = []
    for part in str(text).split(","):
        match = _PART.match(part.strip())
        if not match:
            raise SeedsError(f"bad seed {part!r} in --seeds={text!r}: give ranges a-b and numbers, e.g. 0-49999 or 1,5,7")
        lo = int(match.group(1))
        hi = lo if match.group(2) is None else int(match.group(2))
        if hi < lo:
            raise SeedsError(f"seed range {part!r} ends before it starts")
        seeds.extend(range(lo, hi + 1))
    if len(set(seeds)) != len(seeds):
        seeds = list(dict.fromkeys(seeds))
    if seeds and max(seeds) >= 2**32:
        raise SeedsError(f"seeds must be below 2^32, got {max(seeds)}")
    return seeds


def seed_path(out_dir: pathlib.Path, seed: int) -> pathlib.Path:
    return out_dir / f"{seed // 1000 * 1000:06d}" / f"{seed:06d}.npy"


def _save(path: pathlib.Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.partial{os.getpid()}.npy")
    np.save(partial, np.asarray(array, np.float32), allow_pickle=False)
    partial.replace(path)


def sample_seeds(generate: Callable[..., tuple[np.ndarray, int]], seeds: list[int], out_dir: str | pathlib.Path,
                 record: dict) -> dict:
    """Draw the `seeds` not yet in `out_dir` with `generate(seeds=..., on_batch=...)` (as
    `training.sampling.generate_samples`), writing each sample as its batch finishes.

    `record` (sampler, checkpoint step, ...) goes into `sampling.json` with the seed range, the nfe
    and the counts; an existing `sampling.json` of another record (other sampler or checkpoint) is an
    error, so that one directory never mixes runs. Returns the record written.
    """
    out_dir = pathlib.Path(out_dir)
    meta = out_dir / "sampling.json"
    if meta.exists():
        previous = json.loads(meta.read_text())
        clash = {key: (previous.get(key), value) for key, value in record.items() if previous.get(key) != value}
        if clash:
            raise SeedsError(f"{out_dir} holds samples of another run ({clash}); use another --workdir or "
                             f"remove {out_dir}")
    todo = [seed for seed in seeds if not seed_path(out_dir, seed).exists()]
    nfe = None
    if todo:
        def write(batch_seeds, samples):
            if not np.all(np.isfinite(samples)):
                raise FloatingPointError(f"non-finite samples for seeds {int(batch_seeds[0])}-{int(batch_seeds[-1])};"
                                         " nothing written for them")
            for seed, sample in zip(batch_seeds, samples, strict=True):
                _save(seed_path(out_dir, int(seed)), sample)

        _, nfe = generate(seeds=np.asarray(todo, np.int64), on_batch=write)
    result = {**record, "seeds": _describe(seeds), "num_seeds": len(seeds), "written": len(todo),
              "skipped_existing": len(seeds) - len(todo), "nfe": nfe if nfe is not None else _previous_nfe(meta),
              "out_dir": str(out_dir.absolute()), "devices": jax.device_count()}
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = meta.with_name(f"sampling.partial{os.getpid()}.json")
    partial.write_text(json.dumps(result, indent=2))
    partial.replace(meta)
    return result


def _previous_nfe(meta: pathlib.Path):
    return json.loads(meta.read_text()).get("nfe") if meta.exists() else None


def _describe(seeds: list[int]) -> str:
    """Seeds as ranges, the inverse of `parse_seeds`."""
    parts, i = [], 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        parts.append(str(seeds[i]) if i == j else f"{seeds[i]}-{seeds[j]}")
        i = j + 1
    return ",".join(parts)
