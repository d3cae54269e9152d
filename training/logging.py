"""Run outputs: metrics as JSON lines and TensorBoard events, sample grids, the loss curve.

Only process 0 writes; the others get a writer that does nothing, so callers need no checks.
The log is crash-safe: a writer resuming at step k keeps only the records up to k (a killed run
may have logged steps it never saved) and drops a torn last line (a full disk); TensorBoard is
told to discard its events from step k + 1 on (`purge_step`), so both show one curve.
"""
from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Mapping

import jax
import numpy as np
from absl import logging
from PIL import Image

from training.files import atomic_write_text

METRICS_FILE = "metrics.jsonl"
LOSS_PLOT_FILE = "loss.png"


def image_grid(images: np.ndarray, ncols: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile `images: [B, H, W, C]` with values in [0, 1] into a uint8 grid `[H', W', C]`."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    if images.ndim != 4:
        raise ValueError(f"image_grid needs [B, H, W, C] images, got shape {images.shape}")
    b, h, w, c = images.shape
    ncols = ncols or math.ceil(math.sqrt(b))
    nrows = math.ceil(b / ncols)
    grid = np.ones((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), np.float32)
    for i in range(b):
        r, q = divmod(i, ncols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = images[i]
    return np.round(grid * 255).astype(np.uint8)


def save_image_grid(path: str | pathlib.Path, images: np.ndarray, scale: int = 4) -> pathlib.Path:
    """Write `images: [B, H, W, C]` in [0, 1] as one PNG grid, enlarged `scale` times."""
    grid = image_grid(images)
    mode = "L" if grid.shape[-1] == 1 else "RGB"
    picture = Image.fromarray(grid[..., 0] if mode == "L" else grid, mode)
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return path


def save_scatter(path: str | pathlib.Path, points: np.ndarray) -> pathlib.Path:
    """Write 2-D samples `points: [B, 2]` as a scatter plot PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(points[:, 0], points[:, 1], s=2)
    ax.set_aspect("equal")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _parse(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("step"), int) else None


def read_metrics(workdir: str | pathlib.Path) -> list[dict]:
    """All records of `workdir/metrics.jsonl` (one JSON object per line); a torn or garbled line
    (a crash or a full disk while writing it) is skipped."""
    path = pathlib.Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    records = (_parse(line) for line in path.read_text(errors="replace").splitlines() if line.strip())
    return [r for r in records if r is not None]


def truncate_metrics(workdir: str | pathlib.Path, last_step: int) -> None:
    """Keep only the well-formed records of steps <= `last_step` (rewritten atomically)."""
    path = pathlib.Path(workdir) / METRICS_FILE
    if not path.exists():
        return
    lines = path.read_text(errors="replace").splitlines()
    kept = [line for line in lines if (r := _parse(line)) is not None and r["step"] <= last_step]
    if len(kept) != len([line for line in lines if line.strip()]):
        logging.info("metrics.jsonl: kept %d records up to step %d, dropped %d (logged after the restored "
                     "step, or torn)", len(kept), last_step, len(lines) - len(kept))
        atomic_write_text(path, "".join(line + "\n" for line in kept))


def plot_loss_curve(workdir: str | pathlib.Path, key: str = "loss") -> pathlib.Path | None:
    """Plot `key` against step from the metrics file to `workdir/loss.png`."""
    records = [r for r in read_metrics(workdir) if key in r]
    if not records:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["step"] for r in records], [r[key] for r in records], label=key)
    evals = [r for r in read_metrics(workdir) if "eval_loss" in r]
    if evals:
        ax.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], label="eval_loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if all(r[key] > 0 for r in records):
        ax.set_yscale("log")
    ax.legend()
    path = pathlib.Path(workdir) / LOSS_PLOT_FILE
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class MetricWriter:
    """Scalars to `metrics.jsonl` and TensorBoard (tensorboardX), images to PNG and TensorBoard."""

    def __init__(self, workdir: str | pathlib.Path, *, tensorboard: bool = True, start_step: int | None = None):
        """`start_step`: the step a run (re)starts from; later records of an earlier run are dropped."""
        self.workdir = pathlib.Path(workdir)
        self.active = jax.process_index() == 0
        self._tb = None
        if self.active:
            self.workdir.mkdir(parents=True, exist_ok=True)
            if start_step is not None:
                truncate_metrics(self.workdir, start_step)
            if tensorboard:
                from tensorboardX import SummaryWriter
                purge = {"purge_step": start_step + 1} if start_step is not None else {}
                self._tb = SummaryWriter(str(self.workdir / "tensorboard"), **purge)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        if not self.active:
            return
        record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        with open(self.workdir / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, float(v), int(step))

    def write_samples(self, step: int, samples: np.ndarray, directory: str = "samples") -> pathlib.Path | None:
        """Samples in [0, 1] (`[B, H, W, C]`) as a PNG grid, 2-D points (`[B, 2]`) as a scatter."""
        if not self.active:
            return None
        path = self.workdir / directory / f"step_{int(step)}.png"
        if samples.ndim == 2:
            return save_scatter(path, samples)
        save_image_grid(path, samples)
        if self._tb is not None:
            self._tb.add_image("samples", image_grid(samples), int(step), dataformats="HWC")
        return path

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
