"""CLI modes for the applications of a trained model: denoise, edit, encode, decode, interpolate,
anomaly (the library code is in `samplers.denoise`, `.edit`, `.encode`, `.anomaly`).

`score-sde <mode> --config=FILE --workdir=DIR --input=PATH [mode flags]`. As in every mode of
the main CLI, the model is the config's, with the EMA parameters of `workdir`'s checkpoint
`eval.checkpoint` (0 = the newest good one), restored by `training.experiment.load_trained`. Importing this module registers the modes in `scripts.modes.MODES` and defines
their flags; each mode is a thin adapter over a function with explicit arguments
(`denoise_inputs`, `edit_inputs`, ...) that a notebook or test can call directly.

Inputs (`--input`) and outputs are read, checked and written by `training.inputs` (PNG files or
folders, .npz arrays; checked before the checkpoint is read). Outputs go to `--output_dir`
(default `workdir/<mode>`): `<name>.npz` in the model's range, `<name>.png` as a grid in [0, 1]
(image data only), and `summary.json`.
"""
from __future__ import annotations

import io
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags, logging

import samplers
from configs.builders import build_sampler, build_sde
from samplers import anomaly, denoise, edit, encode
from scripts.modes import register_mode
from sde_lib import SDE, ScoreFn
from training.datasets import quantization_levels
from training.errors import UsageError
from training.experiment import load_trained, make_score_fn
from training.files import atomic_write_bytes
from training.inputs import (
    check_finite,
    check_output_dir,
    check_shape,
    load_array,
    load_mask,
    read_npz,
    save_array,
    write_summary,
)


# --- the model ------------------------------------------------------------------------------
def restore_score_fn(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> tuple[SDE, ScoreFn]:
    """The SDE and the evaluation score function of the EMA parameters of `workdir`'s checkpoint
    (`eval.checkpoint`, 0 = the newest good one; `training.experiment.load_trained`)."""
    exp, state = load_trained(config, workdir, step=config.eval.checkpoint)
    logging.info("Using the EMA parameters of step %d", int(state.step))
    score_fn = make_score_fn(exp.sde, exp.model, state.ema_params, continuous=exp.continuous, precond=exp.precond)
    return exp.sde, score_fn


def _check_sampler(name: str | None) -> None:
    if name is not None and name not in samplers.SAMPLERS:
        raise UsageError(f"unknown sampler --app_sampler={name!r}; known: {', '.join(samplers.SAMPLERS.names())}")


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
             output_dir: str | pathlib.Path | None, mode: str, check=None):
    """The inputs, the output folder, the SDE and the score; every input is checked (`check(x)`
    for a mode's own rules) before the checkpoint is read."""
    x = load_array(input_path, config)
    check_shape(x, config, input_path)
    if check is not None:
        check(x)
    out_dir = pathlib.Path(output_dir) if output_dir else pathlib.Path(workdir) / mode
    check_output_dir(out_dir)
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
    def check_levels(_):
        _check_sampler(sampler)
        for flag, value in (("noise_sigma", sigma), ("add_noise", add_noise)):
            if value is not None:
                try:
                    denoise.noise_time(build_sde(config), value)
                except ValueError as error:
                    raise UsageError(f"--{flag}={value}: {error}") from None

    x, out_dir, sde, score_fn = _prepare(config, workdir, input_path, output_dir, "denoise", check_levels)
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
    # An estimate at or below the smallest level the SDE represents (0 for a clean image) means
    # nothing to denoise: those inputs are returned as they are, never divided by a zero level.
    smallest = float(np.asarray(sde.sigma(jnp.zeros(()))))
    clean_inputs = np.flatnonzero(np.atleast_1d(np.asarray(level)) <= max(smallest, 0.0) * (1 + 1e-6))
    if clean_inputs.size:
        logging.warning("No noise found in input(s) %s (estimated level <= %.3g): returned unchanged",
                        clean_inputs.tolist(), smallest)
        keep = jnp.asarray(np.atleast_1d(np.asarray(level)) > max(smallest, 0.0) * (1 + 1e-6))
        safe_level = jnp.where(keep, level, float(np.asarray(sde.sigma(jnp.asarray(sde.T)))))
        mean = jax.jit(lambda y, s: denoise.tweedie_denoise(sde, score_fn, y, s))(x, safe_level)
        mean = jnp.where(keep.reshape((-1,) + (1,) * (x.ndim - 1)), mean, x)
    else:
        mean = jax.jit(lambda y, s: denoise.tweedie_denoise(sde, score_fn, y, s))(x, level)
    summary = {"mode": "denoise", "sigma": np.atleast_1d(np.asarray(level)).tolist(),
               "unchanged_inputs": clean_inputs.tolist(),
               "outputs": save_array(out_dir, "noisy", x, config) + save_array(out_dir, "denoised", mean, config)}
    if clean is not None:
        summary["mse_noisy"] = float(jnp.mean((x - clean) ** 2))
        summary["mse_denoised"] = float(jnp.mean((mean - clean) ** 2))
    if posterior_samples > 0:
        if clean_inputs.size:
            raise UsageError(f"--posterior_samples needs noisy inputs; input(s) {clean_inputs.tolist()} show no "
                             "noise (give --noise_sigma, or leave them out)")
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
    mask = None

    def check_mask(x):
        nonlocal mask
        _check_sampler(sampler)
        if mask_path is not None:
            mask = load_mask(mask_path, config)
            if mask.shape[1:] != x.shape[1:] or mask.shape[0] not in (1, x.shape[0]):
                raise UsageError(f"mask {mask_path} has shape {mask.shape}; it must be [1 or {x.shape[0]}, "
                                 f"{', '.join(map(str, x.shape[1:]))}] to match the inputs")
            mask = jnp.asarray(mask)

    x, out_dir, sde, score_fn = _prepare(config, workdir, input_path, output_dir, "edit", check_mask)
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
    buffer = io.BytesIO()
    np.savez(buffer, images=check_finite("latents", z))
    atomic_write_bytes(out_dir / "latents.npz", buffer.getvalue())
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
    def check_pairs(x):
        if x.shape[0] % 2 or num < 2:
            raise UsageError(f"interpolate needs an even number of inputs (pairs) and num >= 2, "
                             f"got {x.shape[0]} inputs in {input_path} and num={num}")

    x, out_dir, sde, score_fn = _prepare(config, workdir, input_path, output_dir, "interpolate", check_pairs)
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
        raise UsageError(f"unknown anomaly score {score_name!r}; known: {', '.join(ANOMALY_SCORES)}")
    labels = None

    def check_labels(x):
        nonlocal labels
        if labels_path is not None:
            labels = read_npz(pathlib.Path(labels_path), "labels")
            if labels.shape != (x.shape[0],) or not np.isin(labels, (0, 1)).all():
                raise UsageError(f"{labels_path}: labels must be 0/1 of shape [{x.shape[0]}] (one per input), "
                                 f"got shape {labels.shape}")

    x, out_dir, sde, score_fn = _prepare(config, workdir, input_path, output_dir, "anomaly", check_labels)
    if score_name == "nll":
        bin_width = ((2.0 if config.data.centered else 1.0) / quantization_levels(config.data.dataset)
                     if x.ndim == 4 else None)
        score = jax.jit(lambda k, v: anomaly.nll_bits_per_dim(k, sde, score_fn, v, bin_width=bin_width,
                                                              rtol=config.sampling.rtol,
                                                              atol=config.sampling.atol))
    else:
        levels = tuple(float(t) for t in times)
        score = jax.jit(lambda k, v: anomaly.denoising_error(k, sde, score_fn, v, levels, num_draws))
    scores = check_finite("anomaly score", np.asarray(score(jax.random.PRNGKey(seed), x)))
    summary = {"mode": "anomaly", "score": score_name, "scores": scores.tolist(),
               "ranking": np.asarray(anomaly.rank_anomalies(jnp.asarray(scores))).tolist()}
    if labels is not None:
        summary["auroc"] = anomaly.auroc(scores, labels)
    return write_summary(out_dir, summary)


# --- CLI flags and mode registration ----------------------------------------------------------
ANOMALY_SCORES = ("denoising_error", "nll")
flags.DEFINE_string("input", None, "Input PNG, folder of PNGs, or .npz (`images`, else its only array).")
flags.DEFINE_string("output_dir", None, "Output folder (default WORKDIR/<mode>).")
flags.DEFINE_integer("app_seed", 0, "PRNG seed.", lower_bound=0)
flags.DEFINE_string("app_sampler", None, "Sampler name (default: config.sampling.method).")
flags.DEFINE_float("noise_sigma", None, "Noise level in the model's data range (default: estimated per input).")
flags.DEFINE_float("add_noise", None, "Corrupt the input with this noise level first and report MSE.")
flags.DEFINE_integer("posterior_samples", 0, "Posterior samples per input.", lower_bound=0)
flags.DEFINE_float("strength", 0.5, "t0 / T in [0, 1].", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_string("mask", None, "PNG / .npz mask, 1 (white) where the input is kept.")
flags.DEFINE_integer("interp_num", 8, "Points per path, end points included.", lower_bound=2)
# --labels (anomaly: an .npz of labels [B], 1 = anomaly, for the AUROC) is defined with sample's in train_modes.
flags.DEFINE_list("anomaly_times", ["0.02", "0.05", "0.1", "0.2", "0.4"], "Noise levels t in (0, 1].")
flags.DEFINE_integer("anomaly_draws", 4, "Noise draws per level.", lower_bound=1)
flags.DEFINE_enum("anomaly_score", "denoising_error", ANOMALY_SCORES, "Which score to compute.")
FLAGS = flags.FLAGS


def _times_ok(values: list[str]) -> bool:
    try:
        return bool(values) and all(0.0 < float(v) <= 1.0 for v in values)
    except ValueError:
        return False


def _positive_or_unset(value: float | None) -> bool:
    return value is None or (np.isfinite(value) and value > 0)


flags.register_validator("anomaly_times", _times_ok, "must be a comma-separated list of times in (0, 1]")
flags.register_validator("noise_sigma", _positive_or_unset, "must be a finite number > 0")
flags.register_validator("add_noise", _positive_or_unset, "must be a finite number > 0")


def _flag_adapter(name: str, fn, summary: str, **flag_of_argument: str):
    """Register `fn(config, workdir, input, output_dir=..., argument=FLAGS.<flag>, ...)` as mode
    `name`, taking --input, --output_dir and the flags named in `flag_of_argument`."""

    def mode(config: ml_collections.ConfigDict | None, workdir: pathlib.Path) -> int:
        if FLAGS.input is None:
            raise UsageError(f"mode {name!r} needs --input (PNG, folder of PNGs, or .npz)")
        kwargs = {argument: FLAGS[flag].value for argument, flag in flag_of_argument.items()}
        fn(config, workdir, FLAGS.input, output_dir=FLAGS.output_dir, **kwargs)
        return 0

    mode.__name__ = f"{name}_mode"
    return register_mode(name, summary=summary, flags=("input", "output_dir", *flag_of_argument.values()),
                         reads_checkpoint=True)(mode)


APPLICATION_MODES = {
    "denoise": _flag_adapter("denoise", denoise_inputs, "Denoise images: Tweedie posterior mean and posterior samples.",
                             sigma="noise_sigma", add_noise="add_noise", posterior_samples="posterior_samples",
                             sampler="app_sampler", seed="app_seed"),
    "edit": _flag_adapter("edit", edit_inputs, "SDEdit: noise the inputs to a strength and denoise them back.",
                          strength="strength", mask_path="mask", sampler="app_sampler", seed="app_seed"),
    "encode": _flag_adapter("encode", encode_inputs, "Latent codes of inputs through the probability flow."),
    "decode": _flag_adapter("decode", decode_inputs, "Data from latent codes through the probability flow."),
    "interpolate": _flag_adapter("interpolate", interpolate_inputs, "Slerp paths between pairs of inputs' codes.",
                                 num="interp_num"),
    "anomaly": _flag_adapter("anomaly", anomaly_inputs, "Anomaly scores, ranking and AUROC of inputs.",
                             labels_path="labels", times="anomaly_times", num_draws="anomaly_draws",
                             seed="app_seed", score_name="anomaly_score"),
}
"""name -> registered mode `(config, workdir) -> 0`, for `scripts.main` (also in `scripts.modes.MODES`)."""
