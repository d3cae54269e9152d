"""CLI modes for the applications of a trained model: denoise, edit, encode, decode, interpolate,
anomaly (the library code is in `samplers.denoise`, `.edit`, `.encode`, `.anomaly`).

`score-sde <mode> --config=FILE --workdir=DIR --input=PATH [mode flags]`. As in every mode of
the main CLI, the model is the config's, with the EMA parameters of `workdir`'s checkpoint
`eval.checkpoint` (0 = the newest good one), restored by `training.experiment.load_trained`. Importing this module registers the modes in `scripts.modes.MODES` and defines
their flags; each mode is a thin adapter over a function with explicit arguments
(`denoise_inputs`, `edit_inputs`, ...) that a notebook or test can call directly.

Inputs (`--input`): a PNG file, a folder of PNGs (sorted by name), or an .npz. PNG pixels are
mapped to [0, 1] and through the config's data scaler; .npz arrays (key `images`, else the only
array) are taken in the model's data range unless they are uint8. Outputs go to `--output_dir`
(default `workdir/<mode>`): `<name>.npz` in the model's range, `<name>.png` as a grid in [0, 1]
(image data only), and `summary.json`.
"""
from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags, logging
from PIL import Image

import samplers
from configs.builders import build_sampler
from samplers import anomaly, denoise, edit, encode
from scripts.modes import register_mode
from sde_lib import SDE, ScoreFn
from training.data import get_data_inverse_scaler, get_data_scaler
from training.experiment import load_trained, make_score_fn
from training.logging import save_image_grid


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
def restore_score_fn(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> tuple[SDE, ScoreFn]:
    """The SDE and the evaluation score function of the EMA parameters of `workdir`'s checkpoint
    (`eval.checkpoint`, 0 = the newest good one; `training.experiment.load_trained`)."""
    exp, state = load_trained(config, workdir, step=config.eval.checkpoint)
    logging.info("Using the EMA parameters of step %d", int(state.step))
    score_fn = make_score_fn(exp.sde, exp.model, state.ema_params, continuous=exp.continuous, precond=exp.precond)
    return exp.sde, score_fn


def _sampler(config: ml_collections.ConfigDict, sde: SDE, name: str | None, task: str):
    """The config's sampler, or the named one with its defaults (plus the config's `sampling.eps`),
    without a Langevin corrector or churn (they would make `task`, a conditional sampling, forget its
    input; `denoise.posterior_sampler` warns)."""
    if name is None:
        return denoise.posterior_sampler(build_sampler(config, sde), task)
    cls = samplers.SAMPLERS.get(name)
    eps = {"eps": config.sampling.eps} if "eps" in getattr(cls, "__dataclass_fields__", {}) else {}
    return denoise.posterior_sampler(samplers.build_sampler(name, sde, **eps), task)


def _prepare(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, input_path: str | pathlib.Path,
             output_dir: str | pathlib.Path | None, mode: str):
    x = load_array(input_path, config)
    check_shape(x, config)
    out_dir = pathlib.Path(output_dir) if output_dir else pathlib.Path(workdir) / mode
    sde, score_fn = restore_score_fn(config, pathlib.Path(workdir))
    return jnp.asarray(x), out_dir, sde, score_fn


# --- the applications, with explicit arguments -----------------------------------------------
def denoise_inputs(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, input_path: str | pathlib.Path, *,
                   output_dir: str | pathlib.Path | None = None, sigma: float | None = None,
                   add_noise: float | None = None, posterior_samples: int = 0, sampler: str | None = None,
                   seed: int = 0) -> dict:
    """Tweedie posterior mean of noisy inputs, and `posterior_samples` samples of p(x | y) each.

    `sigma` is the noise level in the model's data range (default: estimated per input);
    `add_noise` first corrupts (clean) inputs with that level and reports the MSE before and after.
    """
    x, out_dir, sde, score_fn = _prepare(config, workdir, input_path, output_dir, "denoise")
    noise_key, sample_key = jax.random.split(jax.random.PRNGKey(seed))
    clean = None
    if add_noise is not None:
        clean, x = x, x + add_noise * jax.random.normal(noise_key, x.shape, x.dtype)
    if sigma is not None:
        level = jnp.asarray(sigma, x.dtype)
    elif add_noise is not None:
        level = jnp.asarray(add_noise, x.dtype)
    else:
        level = denoise.estimate_noise_level(x)
    mean = jax.jit(lambda y, s: denoise.tweedie_denoise(sde, score_fn, y, s))(x, level)
    summary = {"mode": "denoise", "sigma": np.atleast_1d(np.asarray(level)).tolist(),
               "outputs": save_array(out_dir, "noisy", x, config) + save_array(out_dir, "denoised", mean, config)}
    if clean is not None:
        summary["mse_noisy"] = float(jnp.mean((x - clean) ** 2))
        summary["mse_denoised"] = float(jnp.mean((mean - clean) ** 2))
    if posterior_samples > 0:
        start = jnp.mean(level)  # one start time for the batch
        reps = jnp.repeat(x, posterior_samples, axis=0)
        chain = _sampler(config, sde, sampler, "posterior sampling")
        draws, nfe = denoise.posterior_denoise(sample_key, chain, score_fn, reps, start)
        draws = jnp.reshape(draws, (x.shape[0], posterior_samples) + x.shape[1:])
        summary["posterior_nfe"] = int(nfe)
        summary["outputs"] += save_array(out_dir, "posterior_samples", draws, config)
    return write_summary(out_dir, summary)


def edit_inputs(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, input_path: str | pathlib.Path, *,
                output_dir: str | pathlib.Path | None = None, strength: float = 0.5,
                mask_path: str | pathlib.Path | None = None, sampler: str | None = None, seed: int = 0) -> dict:
    """SDEdit of the inputs at `strength` (t0 / T), keeping the region where the mask is 1."""
    x, out_dir, sde, score_fn = _prepare(config, workdir, input_path, output_dir, "edit")
    mask = None if mask_path is None else jnp.asarray(load_mask(mask_path, config))
    chain = _sampler(config, sde, sampler, "SDEdit")
    edited, nfe = edit.sdedit(jax.random.PRNGKey(seed), chain, score_fn, x, strength, mask=mask)
    outputs = save_array(out_dir, "input", x, config) + save_array(out_dir, "edited", edited, config)
    return write_summary(out_dir, {"mode": "edit", "strength": strength, "nfe": int(nfe),
                                   "masked": mask is not None, "outputs": outputs})


def _codec(config: ml_collections.ConfigDict, sde: SDE) -> encode.FlowCodec:
    s = config.sampling
    return encode.FlowCodec(sde, eps=s.eps, rtol=s.rtol, atol=s.atol)


def encode_inputs(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, input_path: str | pathlib.Path, *,
                  output_dir: str | pathlib.Path | None = None) -> dict:
    """Latents at T of the inputs through the probability flow (`latents.npz`), the decoded
    reconstruction, and the round-trip error."""
    x, out_dir, sde, score_fn = _prepare(config, workdir, input_path, output_dir, "encode")
    codec = _codec(config, sde)
    z, nfe = codec.encode(score_fn, x)
    back, _ = codec.decode(score_fn, z)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "latents.npz", images=np.asarray(z))
    outputs = [str(out_dir / "latents.npz")] + save_array(out_dir, "reconstruction", back, config)
    return write_summary(out_dir, {"mode": "encode", "nfe": int(nfe), "outputs": outputs,
                                   "round_trip_max_abs_error": float(jnp.max(jnp.abs(back - x)))})


def decode_inputs(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, input_path: str | pathlib.Path, *,
                  output_dir: str | pathlib.Path | None = None) -> dict:
    """Data from latents (the `latents.npz` of `encode`) through the probability flow."""
    z, out_dir, sde, score_fn = _prepare(config, workdir, input_path, output_dir, "decode")
    x, nfe = _codec(config, sde).decode(score_fn, z)
    return write_summary(out_dir, {"mode": "decode", "nfe": int(nfe),
                                   "outputs": save_array(out_dir, "decoded", x, config)})


def interpolate_inputs(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                       input_path: str | pathlib.Path, *, output_dir: str | pathlib.Path | None = None,
                       num: int = 8) -> dict:
    """Slerp paths of `num` points between the codes of pairs: first half of the inputs to the second.
    The grid has one row per pair."""
    x, out_dir, sde, score_fn = _prepare(config, workdir, input_path, output_dir, "interpolate")
    if x.shape[0] % 2 or num < 2:
        raise ValueError(f"interpolate needs an even number of inputs (pairs) and num >= 2, "
                         f"got {x.shape[0]} inputs and num={num}")
    half = x.shape[0] // 2
    path = encode.interpolate(_codec(config, sde), score_fn, x[:half], x[half:], jnp.linspace(0.0, 1.0, num))
    path = jnp.swapaxes(path, 0, 1)
    return write_summary(out_dir, {"mode": "interpolate", "pairs": half, "num": num,
                                   "outputs": save_array(out_dir, "interpolation", path, config)})


def anomaly_inputs(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, input_path: str | pathlib.Path, *,
                   output_dir: str | pathlib.Path | None = None, labels_path: str | pathlib.Path | None = None,
                   times: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.4), num_draws: int = 4,
                   seed: int = 0, score_name: str = "denoising_error") -> dict:
    """Anomaly scores of the inputs (`score_name`: "denoising_error", or "nll" for the probability-flow
    bits/dim at the config's solver tolerances), their ranking (most anomalous first), and the
    AUROC against `labels` (an .npz with `labels: [B]`, 1 = anomaly) when given."""
    if score_name not in ANOMALY_SCORES:
        raise ValueError(f"unknown anomaly score {score_name!r}; known: {', '.join(ANOMALY_SCORES)}")
    x, out_dir, sde, score_fn = _prepare(config, workdir, input_path, output_dir, "anomaly")
    if score_name == "nll":
        bin_width = (2.0 if config.data.centered else 1.0) / 256.0 if x.ndim == 4 else None
        score = jax.jit(lambda k, v: anomaly.nll_bits_per_dim(k, sde, score_fn, v, bin_width=bin_width,
                                                              rtol=config.sampling.rtol,
                                                              atol=config.sampling.atol))
    else:
        score = jax.jit(lambda k, v: anomaly.denoising_error(k, sde, score_fn, v, tuple(times), num_draws))
    scores = np.asarray(score(jax.random.PRNGKey(seed), x))
    summary = {"mode": "anomaly", "score": score_name, "scores": scores.tolist(),
               "ranking": np.asarray(anomaly.rank_anomalies(jnp.asarray(scores))).tolist()}
    if labels_path is not None:
        with np.load(labels_path, allow_pickle=False) as archive:
            summary["auroc"] = anomaly.auroc(scores, archive["labels"])
    return write_summary(out_dir, summary)


# --- CLI flags and mode registration ----------------------------------------------------------
ANOMALY_SCORES = ("denoising_error", "nll")
flags.DEFINE_string("input", None, "Applications: input PNG, folder of PNGs, or .npz.")
flags.DEFINE_string("output_dir", None, "Applications: output folder (default WORKDIR/<mode>).")
flags.DEFINE_integer("app_seed", 0, "Applications: PRNG seed.")
flags.DEFINE_string("app_sampler", None, "Applications: sampler name (default: config.sampling.method).")
flags.DEFINE_float("noise_sigma", None, "denoise: noise level in the model's data range (default: estimated).")
flags.DEFINE_float("add_noise", None, "denoise: corrupt the input with this noise level first and report MSE.")
flags.DEFINE_integer("posterior_samples", 0, "denoise: posterior samples per input.")
flags.DEFINE_float("strength", 0.5, "edit: t0 / T in [0, 1].")
flags.DEFINE_string("mask", None, "edit: PNG / .npz mask, 1 (white) where the input is kept.")
flags.DEFINE_integer("interp_num", 8, "interpolate: points per path, end points included.")
flags.DEFINE_string("labels", None, "anomaly: .npz with labels [B] (1 = anomaly) for the AUROC.")
flags.DEFINE_list("anomaly_times", ["0.02", "0.05", "0.1", "0.2", "0.4"], "anomaly: noise levels t.")
flags.DEFINE_integer("anomaly_draws", 4, "anomaly: noise draws per level.")
flags.DEFINE_enum("anomaly_score", "denoising_error", ANOMALY_SCORES, "anomaly: which score to compute.")
FLAGS = flags.FLAGS


def _flag_adapter(name: str, fn, **flag_kwargs):
    """Register `fn(config, workdir, input, output_dir=..., **kwargs from flags)` as mode `name`."""

    def mode(config: ml_collections.ConfigDict | None, workdir: pathlib.Path) -> int:
        if config is None:
            raise ValueError(f"mode {name!r} needs --config (the trained model's config)")
        if FLAGS.input is None:
            raise ValueError(f"mode {name!r} needs --input (PNG, folder of PNGs, or .npz)")
        kwargs = {key: getter() for key, getter in flag_kwargs.items()}
        fn(config, workdir, FLAGS.input, output_dir=FLAGS.output_dir, **kwargs)
        return 0

    mode.__name__ = f"{name}_mode"
    return register_mode(name)(mode)


APPLICATION_MODES = {
    "denoise": _flag_adapter("denoise", denoise_inputs, sigma=lambda: FLAGS.noise_sigma,
                             add_noise=lambda: FLAGS.add_noise, posterior_samples=lambda: FLAGS.posterior_samples,
                             sampler=lambda: FLAGS.app_sampler, seed=lambda: FLAGS.app_seed),
    "edit": _flag_adapter("edit", edit_inputs, strength=lambda: FLAGS.strength, mask_path=lambda: FLAGS.mask,
                          sampler=lambda: FLAGS.app_sampler, seed=lambda: FLAGS.app_seed),
    "encode": _flag_adapter("encode", encode_inputs),
    "decode": _flag_adapter("decode", decode_inputs),
    "interpolate": _flag_adapter("interpolate", interpolate_inputs, num=lambda: FLAGS.interp_num),
    "anomaly": _flag_adapter("anomaly", anomaly_inputs, labels_path=lambda: FLAGS.labels,
                             times=lambda: tuple(float(t) for t in FLAGS.anomaly_times),
                             num_draws=lambda: FLAGS.anomaly_draws, seed=lambda: FLAGS.app_seed,
                             score_name=lambda: FLAGS.anomaly_score),
}
"""name -> registered mode `(config, workdir) -> 0`, for `scripts.main` (also in `scripts.modes.MODES`)."""
