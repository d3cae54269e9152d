"""CLI modes for the applications of a trained model: denoise, edit, encode, decode, interpolate,
anomaly (the library code is in `samplers.denoise`, `.edit`, `.encode`, `.anomaly`).

Each mode is `run(config, workdir, argv) -> summary dict`: `config` and `workdir` as for every
mode of the main CLI (the EMA parameters come from the newest good checkpoint of `workdir`), and
`argv` the mode's own options, parsed here. `MODES` maps names to them for `scripts/main.py`;
`python -m scripts.application_modes MODE --config FILE --workdir DIR [--config.key=value ...]
[options]` runs one on its own.

Inputs (`--input`): a PNG file, a folder of PNGs (sorted by name), or an .npz. PNG pixels are
mapped to [0, 1] and through the config's data scaler; .npz arrays (key `images`, else the only
array) are taken in the model's data range unless they are uint8. Outputs go to `--output_dir`
(default `workdir/<mode>`): `<name>.npz` in the model's range, `<name>.png` as a grid in [0, 1]
(image data only), and `summary.json`.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from PIL import Image

import samplers
from samplers import anomaly, denoise, edit, encode
from sde_lib import SDE, ScoreFn

Mode = Callable[[ml_collections.ConfigDict, pathlib.Path, list[str]], dict]


# --- inputs and outputs ---------------------------------------------------------------------
def _png_files(path: pathlib.Path) -> list[pathlib.Path]:
    files = sorted(path.glob("*.png")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no PNG files in {path}")
    return files


def _read(path: pathlib.Path, key: str, channels: int) -> tuple[np.ndarray, bool]:
    """The raw array of an .npz (by `key`, else its only array) or of PNGs in [0, 1]; and whether
    it is pixel data ([0, 1] from PNG or uint8) rather than values in the model's range."""
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.keys())
            if key not in names and len(names) != 1:
                raise KeyError(f"{path} holds arrays {names}; expected one named {key!r} or a single array")
            array = archive[key if key in names else names[0]]
        if array.dtype == np.uint8:
            return array.astype(np.float32) / 255.0, True
        return array.astype(np.float32), False
    images = []
    for file in _png_files(path):
        with Image.open(file) as picture:
            pixels = np.asarray(picture.convert("L" if channels == 1 else "RGB"), np.float32) / 255.0
        images.append(pixels[..., None] if channels == 1 else pixels)
    return np.stack(images), True


def load_array(path: str | pathlib.Path, config: ml_collections.ConfigDict, key: str = "images") -> np.ndarray:
    """Images `[B, H, W, C]` (or points `[B, d]`) in the model's data range, float32."""
    from training.data import get_data_scaler

    array, pixels = _read(pathlib.Path(path), key, config.data.num_channels)
    return get_data_scaler(config)(array) if pixels else array


def load_mask(path: str | pathlib.Path, config: ml_collections.ConfigDict) -> np.ndarray:
    """A 0/1 mask (1 = keep the input) from a PNG (white = keep) or an .npz (`mask`, values > 0.5)."""
    array, _ = _read(pathlib.Path(path), "mask", config.data.num_channels)
    return (array > 0.5).astype(np.float32)


def check_shape(x: np.ndarray, config: ml_collections.ConfigDict) -> None:
    """Image inputs must match `data.image_size` and `data.num_channels`."""
    d = config.data
    if x.ndim == 4 and x.shape[1:] != (d.image_size, d.image_size, d.num_channels):
        raise ValueError(f"input images have shape {x.shape[1:]}, but the config's model takes "
                         f"({d.image_size}, {d.image_size}, {d.num_channels}) (data.image_size, data.num_channels)")


def save_array(out_dir: pathlib.Path, name: str, x: np.ndarray, config: ml_collections.ConfigDict) -> list[str]:
    """Write `name.npz` (model range) and, for images `[..., H, W, C]`, `name.png` (a grid)."""
    from training.data import get_data_inverse_scaler
    from training.logging import save_image_grid

    out_dir.mkdir(parents=True, exist_ok=True)
    x = np.asarray(x, np.float32)
    written = [out_dir / f"{name}.npz"]
    np.savez(written[0], images=x)
    if x.ndim >= 4:
        flat = x.reshape((-1,) + x.shape[-3:])
        written.append(save_image_grid(out_dir / f"{name}.png", get_data_inverse_scaler(config)(flat)))
    return [str(p) for p in written]


def write_summary(out_dir: pathlib.Path, summary: dict) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    logging.info("%s", json.dumps(summary))
    return summary


# --- the model ------------------------------------------------------------------------------
def restore_score_fn(config: ml_collections.ConfigDict, workdir: pathlib.Path,
                     data_shape: tuple[int, ...]) -> tuple[SDE, ScoreFn]:
    """The SDE and the evaluation score function of the EMA parameters of `workdir`'s newest good
    checkpoint (the training engineer's `Checkpointer`); an error if there is none."""
    from training.evaluation import make_score_fn
    from training.train_loop import build_experiment, checkpointer_for

    exp = build_experiment(config, data_shape)
    _, abstract = exp.init_state()
    ckpt = checkpointer_for(config, workdir)
    try:
        state = ckpt.restore_latest(abstract)
    finally:
        ckpt.close()
    if state is None:
        raise FileNotFoundError(f"no checkpoint to restore in {workdir} (train a model there first)")
    logging.info("Using the EMA parameters of step %d", int(state.step))
    score_fn = make_score_fn(exp.sde, exp.model, state.ema_params, continuous=config.training.continuous,
                             precond=exp.precond)
    return exp.sde, score_fn


def _sampler(config: ml_collections.ConfigDict, sde: SDE, name: str | None):
    """The config's sampler, or the named one with its defaults (plus the config's `sampling.eps`)."""
    from training.builders import build_sampler

    if name is None:
        return build_sampler(config, sde)
    cls = samplers.SAMPLERS.get(name)
    eps = {"eps": config.sampling.eps} if "eps" in getattr(cls, "__dataclass_fields__", {}) else {}
    return samplers.build_sampler(name, sde, **eps)


def _parser(mode: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"score-sde {mode}")
    parser.add_argument("--input", required=True, help="PNG file, folder of PNGs, or .npz")
    parser.add_argument("--output_dir", default=None, help="default: WORKDIR/" + mode)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _prepare(config, workdir, args, mode):
    x = load_array(args.input, config)
    check_shape(x, config)
    out_dir = pathlib.Path(args.output_dir or pathlib.Path(workdir) / mode)
    sde, score_fn = restore_score_fn(config, pathlib.Path(workdir), x.shape[1:])
    return jnp.asarray(x), out_dir, sde, score_fn, jax.random.PRNGKey(args.seed)


# --- the modes ------------------------------------------------------------------------------
def run_denoise(config: ml_collections.ConfigDict, workdir: pathlib.Path, argv: list[str]) -> dict:
    """Tweedie posterior mean (and optionally posterior samples) of noisy inputs."""
    parser = _parser("denoise")
    parser.add_argument("--sigma", type=float, default=None,
                        help="noise level in the model's data range; default: estimated per image")
    parser.add_argument("--add_noise", type=float, default=None,
                        help="first corrupt the (clean) input with this noise level and report the MSE")
    parser.add_argument("--posterior_samples", type=int, default=0, help="samples of p(x | y) per input")
    parser.add_argument("--sampler", default=None, help="sampler name for posterior samples (default: config)")
    args = parser.parse_args(argv)
    x, out_dir, sde, score_fn, key = _prepare(config, workdir, args, "denoise")
    noise_key, sample_key = jax.random.split(key)
    clean = None
    if args.add_noise is not None:
        clean, x = x, x + args.add_noise * jax.random.normal(noise_key, x.shape, x.dtype)
    if args.sigma is not None:
        sigma = jnp.asarray(args.sigma, x.dtype)
    elif args.add_noise is not None:
        sigma = jnp.asarray(args.add_noise, x.dtype)
    else:
        sigma = denoise.estimate_noise_level(x)
    mean = jax.jit(lambda y, s: denoise.tweedie_denoise(sde, score_fn, y, s))(x, sigma)
    summary = {"mode": "denoise", "sigma": np.atleast_1d(np.asarray(sigma)).tolist(),
               "outputs": save_array(out_dir, "noisy", x, config) + save_array(out_dir, "denoised", mean, config)}
    if clean is not None:
        summary["mse_noisy"] = float(jnp.mean((x - clean) ** 2))
        summary["mse_denoised"] = float(jnp.mean((mean - clean) ** 2))
    if args.posterior_samples > 0:
        if np.ndim(sigma) != 0:
            sigma = jnp.mean(sigma)  # one start time for the batch
        sampler = _sampler(config, sde, args.sampler)
        reps = jnp.repeat(x, args.posterior_samples, axis=0)
        draws, nfe = denoise.posterior_denoise(sample_key, sampler, score_fn, reps, sigma)
        draws = jnp.reshape(draws, (x.shape[0], args.posterior_samples) + x.shape[1:])
        summary["posterior_nfe"] = int(nfe)
        summary["outputs"] += save_array(out_dir, "posterior_samples", draws, config)
    return write_summary(out_dir, summary)


def run_edit(config: ml_collections.ConfigDict, workdir: pathlib.Path, argv: list[str]) -> dict:
    """SDEdit of the inputs at `--strength`, optionally keeping a masked region."""
    parser = _parser("edit")
    parser.add_argument("--strength", type=float, default=0.5, help="t0 / T in [0, 1]")
    parser.add_argument("--mask", default=None, help="PNG / .npz, 1 (white) where the input is kept")
    parser.add_argument("--sampler", default=None, help="sampler name (default: config)")
    args = parser.parse_args(argv)
    x, out_dir, sde, score_fn, key = _prepare(config, workdir, args, "edit")
    mask = None if args.mask is None else jnp.asarray(load_mask(args.mask, config))
    sampler = _sampler(config, sde, args.sampler)
    edited, nfe = edit.sdedit(key, sampler, score_fn, x, args.strength, mask=mask)
    outputs = save_array(out_dir, "input", x, config) + save_array(out_dir, "edited", edited, config)
    return write_summary(out_dir, {"mode": "edit", "strength": args.strength, "nfe": int(nfe),
                                   "masked": mask is not None, "outputs": outputs})


def _codec(config: ml_collections.ConfigDict, sde: SDE) -> encode.FlowCodec:
    s = config.sampling
    return encode.FlowCodec(sde, eps=s.eps, rtol=s.rtol, atol=s.atol)


def run_encode(config: ml_collections.ConfigDict, workdir: pathlib.Path, argv: list[str]) -> dict:
    """Latents at T of the inputs through the probability flow, and the round-trip error."""
    args = _parser("encode").parse_args(argv)
    x, out_dir, sde, score_fn, _ = _prepare(config, workdir, args, "encode")
    codec = _codec(config, sde)
    z, nfe = codec.encode(score_fn, x)
    back, _ = codec.decode(score_fn, z)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "latents.npz", images=np.asarray(z))
    outputs = [str(out_dir / "latents.npz")] + save_array(out_dir, "reconstruction", back, config)
    return write_summary(out_dir, {"mode": "encode", "nfe": int(nfe), "outputs": outputs,
                                   "round_trip_max_abs_error": float(jnp.max(jnp.abs(back - x)))})


def run_decode(config: ml_collections.ConfigDict, workdir: pathlib.Path, argv: list[str]) -> dict:
    """Data from latents (an .npz written by `encode`) through the probability flow."""
    args = _parser("decode").parse_args(argv)
    z, out_dir, sde, score_fn, _ = _prepare(config, workdir, args, "decode")
    x, nfe = _codec(config, sde).decode(score_fn, z)
    return write_summary(out_dir, {"mode": "decode", "nfe": int(nfe),
                                   "outputs": save_array(out_dir, "decoded", x, config)})


def run_interpolate(config: ml_collections.ConfigDict, workdir: pathlib.Path, argv: list[str]) -> dict:
    """Slerp paths between the codes of input pairs: the first half of the inputs to the second."""
    parser = _parser("interpolate")
    parser.add_argument("--num", type=int, default=8, help="points per path, end points included")
    args = parser.parse_args(argv)
    x, out_dir, sde, score_fn, _ = _prepare(config, workdir, args, "interpolate")
    if x.shape[0] % 2 or args.num < 2:
        raise ValueError(f"interpolate needs an even number of inputs (pairs) and --num >= 2, "
                         f"got {x.shape[0]} inputs and --num {args.num}")
    half = x.shape[0] // 2
    path = encode.interpolate(_codec(config, sde), score_fn, x[:half], x[half:], jnp.linspace(0.0, 1.0, args.num))
    path = jnp.swapaxes(path, 0, 1)  # [pairs, num, ...]: one row of the grid per pair
    return write_summary(out_dir, {"mode": "interpolate", "pairs": half, "num": args.num,
                                   "outputs": save_array(out_dir, "interpolation", path, config)})


def run_anomaly(config: ml_collections.ConfigDict, workdir: pathlib.Path, argv: list[str]) -> dict:
    """Anomaly scores of the inputs, their ranking, and the AUROC when labels are given."""
    parser = _parser("anomaly")
    parser.add_argument("--labels", default=None, help=".npz with `labels` [B] (1 = anomaly)")
    parser.add_argument("--times", default="0.02,0.05,0.1,0.2,0.4", help="noise levels of the denoising score")
    parser.add_argument("--num_draws", type=int, default=4)
    args = parser.parse_args(argv)
    x, out_dir, sde, score_fn, key = _prepare(config, workdir, args, "anomaly")
    times = tuple(float(t) for t in args.times.split(","))
    scores = np.asarray(jax.jit(lambda k, v: anomaly.denoising_error(k, sde, score_fn, v, times, args.num_draws))(key, x))
    summary = {"mode": "anomaly", "score": "denoising_error", "scores": scores.tolist(),
               "ranking": np.asarray(anomaly.rank_anomalies(jnp.asarray(scores))).tolist()}
    if args.labels is not None:
        with np.load(args.labels, allow_pickle=False) as archive:
            labels = archive["labels"]
        summary["auroc"] = anomaly.auroc(scores, labels)
    return write_summary(out_dir, summary)


MODES: dict[str, Mode] = {
    "denoise": run_denoise,
    "edit": run_edit,
    "encode": run_encode,
    "decode": run_decode,
    "interpolate": run_interpolate,
    "anomaly": run_anomaly,
}


def main(argv: list[str] | None = None) -> dict:
    """`MODE --config FILE --workdir DIR [--config.key=value ...] [mode options]`."""
    from configs import load_config

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="application_modes")
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--config", required=True)
    parser.add_argument("--workdir", required=True)
    args, rest = parser.parse_known_args(argv)
    overrides = [a for a in rest if a.startswith("--config.")]
    options = [a for a in rest if not a.startswith("--config.")]
    config = load_config(args.config, overrides)
    return MODES[args.mode](config, pathlib.Path(args.workdir), options)


if __name__ == "__main__":
    main()
