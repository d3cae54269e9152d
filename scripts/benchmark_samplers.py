"""Sampler error against the number of score evaluations, on a 2-D Gaussian mixture with exact scores.

    python -m scripts.benchmark_samplers --sde=vesde --nfe=10,20,35,50,100,200 --out=/tmp/bench

For each sampler and each target budget of score evaluations (nfe), the sampler is built with the
step count that spends that budget, run once (jitted) from one shared prior sample at T (so the
deterministic samplers differ only by their discretisation error) with the exact mixture score
(`sde_lib.GaussianMixture.score_fn`), and scored by the sliced 2-Wasserstein distance
(`samplers.sample_distance`) of its `--num_samples` outputs to as many exact samples. The adaptive
probability-flow ODE sweeps its tolerance instead and reports the nfe it used. The same distance
between two independent exact sample sets (mean over `--noise_pairs` pairs) is the Monte Carlo
floor: no sampler can be told apart from exact below it at this sample size.

Writes `benchmark_samplers.json` (also printed to stdout as one JSON document) and a log-log plot
`benchmark_samplers.png` into `--out`.
"""
from __future__ import annotations

import json
import math
import pathlib
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

import sde_lib
from samplers.ddim import DDIMSampler
from samplers.dpm_solver import DPMSolverPPSampler
from samplers.edm_heun import EDMHeunSampler
from samplers.ode import ODESampler
from samplers.pc import PCSampler
from samplers.sample_distance import sliced_wasserstein

flags.DEFINE_enum("sde", "vesde", sorted(sde_lib.SDES.names()), "SDE whose exact mixture scores are used.")
flags.DEFINE_list("nfe", ["10", "20", "35", "50", "100", "200"], "Score-evaluation budgets to sweep.")
flags.DEFINE_list("samplers", None, "Samplers to run (default: all of SAMPLERS).")
flags.DEFINE_list("ode_tolerances", ["1e-2", "1e-3", "1e-4", "1e-5"], "rtol = atol of the adaptive ODE.")
flags.DEFINE_integer("num_samples", 4000, "Samples per sampler run (and exact samples).")
flags.DEFINE_integer("num_projections", 64, "Random directions of the sliced Wasserstein distance.")
flags.DEFINE_integer("noise_pairs", 8, "Exact-vs-exact pairs averaged for the Monte Carlo floor.")
flags.DEFINE_integer("seed", 0, "Seed of the sampler runs, exact samples and projections.")
flags.DEFINE_string("out", "benchmark_samplers", "Output directory for the JSON file and the plot.")
FLAGS = flags.FLAGS

# Four well-separated anisotropic components with unequal weights (as in tests/samplers/test_mixture.py).
MIXTURE = sde_lib.GaussianMixture(
    jnp.array([0.4, 0.3, 0.2, 0.1]),
    jnp.array([[-2.5, 0.5], [2.0, 2.0], [0.0, -2.5], [3.0, -1.0]]),
    jnp.array([[[0.5, 0.3], [0.3, 0.3]], [[0.1, 0.0], [0.0, 0.6]],
               [[0.4, -0.15], [-0.15, 0.1]], [[0.05, 0.0], [0.0, 0.05]]]),
)

# name -> (sde, nfe budget) -> sampler spending at most that budget, or None if it cannot.
SAMPLERS: dict[str, Callable[[sde_lib.SDE, int], object | None]] = {
    "euler_pf_ode": lambda sde, nfe: ODESampler(sde, "euler", num_steps=nfe),
    "euler_maruyama": lambda sde, nfe: PCSampler(sde, "euler_maruyama", "none", num_steps=nfe),
    "pc_reverse_diffusion_langevin": lambda sde, nfe: (
        PCSampler(sde, "reverse_diffusion", "langevin", num_steps=nfe // 2) if nfe >= 2 else None),
    "ddim": lambda sde, nfe: DDIMSampler(sde, num_steps=nfe),
    "edm_heun": lambda sde, nfe: EDMHeunSampler(sde, num_steps=(nfe + 1) // 2) if nfe >= 3 else None,
    "dpm_solver_2m": lambda sde, nfe: DPMSolverPPSampler(sde, num_steps=nfe, order=2),
    "dpm_solver_3m": lambda sde, nfe: DPMSolverPPSampler(sde, num_steps=nfe, order=3),
}
ADAPTIVE = "ode_tsit5"


def distance_fn(exact: jax.Array, x_init: jax.Array, projection_key: jax.Array, num_projections: int):
    """`run(sampler, rng) -> (sliced W2 to `exact`, nfe, seconds)`: one jitted call per sampler,
    started from `x_init` (a prior sample at T, the shape of `exact`)."""
    def run(sampler, rng):
        score_fn = MIXTURE.score_fn(sampler.sde)

        @jax.jit
        def sample_and_score(key, x_init):
            x, nfe = sampler(key, score_fn, exact.shape, x_init=x_init)
            return sliced_wasserstein(projection_key, x, exact, num_projections), nfe

        start = time.perf_counter()
        distance, nfe = jax.block_until_ready(sample_and_score(rng, x_init))
        return float(distance), int(nfe), time.perf_counter() - start

    return run


def noise_floor(rng: jax.Array, n: int, pairs: int, projection_key: jax.Array, num_projections: int
                ) -> tuple[float, float]:
    """Mean and standard deviation of the sliced W2 between two independent exact n-sample sets."""
    @jax.jit
    def one(key):
        a_key, b_key = jax.random.split(key)
        return sliced_wasserstein(projection_key, MIXTURE.sample(a_key, n), MIXTURE.sample(b_key, n),
                                  num_projections)

    values = [float(one(key)) for key in jax.random.split(rng, pairs)]
    return float(np.mean(values)), float(np.std(values))


def plot(results: list[dict], floor: float, title: str, path: pathlib.Path) -> None:
    """Log-log plot of distance against nfe, one line per sampler, the Monte Carlo floor dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name in dict.fromkeys(r["sampler"] for r in results):
        points = sorted((r["nfe"], r["sliced_w2"]) for r in results
                        if r["sampler"] == name and r["sliced_w2"] is not None)
        if not points:
            continue
        ax.plot(*zip(*points, strict=True), marker="o", label=name)
    ax.axhline(floor, color="gray", linestyle="--", label="exact vs exact (MC floor)")
    ax.set(xscale="log", yscale="log", xlabel="score evaluations per sample (nfe)",
           ylabel="sliced W2 to exact samples", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _build(name: str, sde, budget: int):
    """The sampler `name` at `budget` evaluations, or None (logged) where it rejects that budget."""
    try:
        return SAMPLERS[name](sde, budget)
    except ValueError as error:
        logging.warning("%s at nfe %d skipped: %s", name, budget, error)
        return None


def main(argv: list[str]) -> None:
    del argv
    names = FLAGS.samplers or [*SAMPLERS, ADAPTIVE]
    unknown = sorted(set(names) - {*SAMPLERS, ADAPTIVE})
    if unknown:
        raise app.UsageError(f"unknown samplers {unknown}; known: {', '.join([*SAMPLERS, ADAPTIVE])}")
    budgets = sorted({int(n) for n in FLAGS.nfe})
    if not budgets or budgets[0] < 1:
        raise app.UsageError(f"--nfe must list positive integers, got {FLAGS.nfe}")
    out = pathlib.Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)

    sde = sde_lib.build_sde(FLAGS.sde)
    exact_key, projection_key, noise_key, prior_key, run_key = jax.random.split(jax.random.key(FLAGS.seed), 5)
    exact = MIXTURE.sample(exact_key, FLAGS.num_samples)
    x_init = sde.prior_sampling(prior_key, exact.shape)
    floor, floor_std = noise_floor(noise_key, FLAGS.num_samples, FLAGS.noise_pairs, projection_key,
                                   FLAGS.num_projections)
    logging.info("exact-vs-exact sliced W2: %.4f +- %.4f", floor, floor_std)
    run = distance_fn(exact, x_init, projection_key, FLAGS.num_projections)

    configs = [(name, budget, _build(name, sde, budget)) for name in names if name in SAMPLERS
               for budget in budgets]
    if ADAPTIVE in names:
        configs += [(ADAPTIVE, float(tol), ODESampler(sde, rtol=float(tol), atol=float(tol)))
                    for tol in FLAGS.ode_tolerances]
    results = []
    for name, setting, sampler in configs:
        if sampler is None:
            continue
        distance, nfe, seconds = run(sampler, run_key)
        if not math.isfinite(distance):
            logging.warning("%s at nfe %d gave non-finite samples; recorded as null", name, nfe)
        entry = {"sampler": name, "nfe": nfe, "sliced_w2": distance if math.isfinite(distance) else None,
                 "seconds_incl_compile": seconds}
        if name == ADAPTIVE:
            entry["rtol"] = setting
        logging.info("%s", entry)
        results.append(entry)

    report = {
        "sde": repr(sde), "num_samples": FLAGS.num_samples, "num_projections": FLAGS.num_projections,
        "seed": FLAGS.seed, "noise_floor": {"mean": floor, "std": floor_std, "pairs": FLAGS.noise_pairs},
        "device": str(jax.devices()[0]), "results": results,
    }
    (out / "benchmark_samplers.json").write_text(json.dumps(report, indent=1))
    plot(results, floor, f"2-D Gaussian mixture, {FLAGS.sde}, n = {FLAGS.num_samples}",
         out / "benchmark_samplers.png")
    print(json.dumps(report))
    logging.info("wrote %s and %s", out / "benchmark_samplers.json", out / "benchmark_samplers.png")


if __name__ == "__main__":
    app.run(main)
