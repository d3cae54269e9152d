"""Sampler error against the number of score evaluations, on a 2-D Gaussian mixture with exact scores.

    python -m scripts.benchmark_samplers --sdes=vpsde,subvpsde,vesde --nfe=5,10,20,35,100 --out=/tmp/bench

For each SDE, sampler and budget of score evaluations (nfe), the sampler is built with the step count
that spends that budget and run once (jitted) from one shared prior sample at T (so the deterministic
samplers differ only by their discretisation error) with the exact mixture score
(`sde_lib.GaussianMixture.score_fn`), and scored by the sliced 1-Wasserstein distance
(`samplers.sample_distance.sliced_wasserstein_1`) of its `--num_samples` outputs to as many exact
samples. Each sigma-space solver runs with its defaults ("default") and over a sweep of its last noise
level sigma_min and Karras schedule exponent rho ("best": the lowest of the sweep and the default;
rho = 100 is nearly log-SNR-uniform). The adaptive probability-flow ODE sweeps its tolerance instead
and reports the nfe it used. The same distance between two independent exact sample sets (mean over
`--noise_pairs` pairs) is the Monte Carlo floor: no sampler can be told apart from exact below it.
The VE SDE spans EDM's sigma range [0.002, 80]; VP and sub-VP have their defaults.

Writes `benchmark_samplers.json` (also printed to stdout as one JSON document), a log-log plot per SDE
`benchmark_samplers.png` and the README table `benchmark_samplers.md` into `--out`.
"""
from __future__ import annotations

import dataclasses
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
from samplers.dpm_solver_sde import DPMSolverSDESampler
from samplers.edm_heun import EDMHeunSampler
from samplers.lms import LMSSampler
from samplers.ode import ODESampler
from samplers.pc import PCSampler
from samplers.sample_distance import sliced_wasserstein_1
from samplers.unipc import UniPCSampler

flags.DEFINE_list("sdes", ["vpsde", "subvpsde", "vesde"], "SDEs whose exact mixture scores are used.")
flags.DEFINE_list("nfe", ["5", "10", "20", "35", "100"], "Score-evaluation budgets to sweep.")
flags.DEFINE_list("samplers", None, "Samplers to run (default: all listed in this script).")
flags.DEFINE_list("ode_tolerances", ["1e-2", "1e-3", "1e-4"], "rtol = atol of the adaptive ODE.")
flags.DEFINE_list("sweep_sigma_min", ["0.005", "0.02", "0.05", "0.1", "0.15", "0.25", "0.4"],
                  "Last noise levels of the sweep (with each --sweep_rho); empty: defaults only.")
flags.DEFINE_list("sweep_rho", ["3", "7", "100"], "Karras exponents of the sweep.")
flags.DEFINE_integer("num_samples", 100_000, "Samples per sampler run (and exact samples).")
flags.DEFINE_integer("num_projections", 64, "Random directions of the sliced Wasserstein distance.")
flags.DEFINE_integer("noise_pairs", 4, "Exact-vs-exact pairs averaged for the Monte Carlo floor.")
flags.DEFINE_integer("seed", 0, "Seed of the sampler runs, exact samples and projections.")
flags.DEFINE_string("out", "benchmark_samplers", "Output directory for the JSON file, plot and table.")
FLAGS = flags.FLAGS

# Four well-separated anisotropic components with unequal weights (as in tests/samplers/test_mixture.py).
MIXTURE = sde_lib.GaussianMixture(  # numpy: float64 once main enables x64
    np.array([0.4, 0.3, 0.2, 0.1]),
    np.array([[-2.5, 0.5], [2.0, 2.0], [0.0, -2.5], [3.0, -1.0]]),
    np.array([[[0.5, 0.3], [0.3, 0.3]], [[0.1, 0.0], [0.0, 0.6]],
              [[0.4, -0.15], [-0.15, 0.1]], [[0.05, 0.0], [0.0, 0.05]]]),
)
SDE_KWARGS = {"vesde": {"sigma_min": 0.002, "sigma_max": 80.0}}


def mixture_score_fn(sde: sde_lib.SDE):
    """The exact score of MIXTURE under `sde` with closed-form 2 x 2 inverses: the same function as
    `MIXTURE.score_fn(sde)`, without batched LAPACK calls over (samples x components), which XLA's
    CPU runtime was seen to stall on at 20k+ samples (jax 0.10)."""
    weights, means, covs = (jnp.asarray(a) for a in (MIXTURE.weights, MIXTURE.means, MIXTURE.covs))

    def score(x, t):
        alpha = sde.alpha(t).astype(x.dtype)[:, None, None]
        var = (sde.marginal_std(t).astype(x.dtype) ** 2)[:, None]
        mu = alpha * means[None]  # [B, K, 2]
        a = alpha[..., 0] ** 2 * covs[None, :, 0, 0] + var
        b = alpha[..., 0] ** 2 * covs[None, :, 0, 1]
        d = alpha[..., 0] ** 2 * covs[None, :, 1, 1] + var
        det = a * d - b * b
        diff = x[:, None, :] - mu
        # Sigma^-1 diff for Sigma = [[a, b], [b, d]]
        inv_diff = jnp.stack([d * diff[..., 0] - b * diff[..., 1], a * diff[..., 1] - b * diff[..., 0]], -1)
        inv_diff = inv_diff / det[..., None]
        logits = jnp.log(weights)[None] - 0.5 * (jnp.sum(diff * inv_diff, -1) + jnp.log(det))
        resp = jax.nn.softmax(logits, axis=-1)
        return -jnp.sum(resp[..., None] * inv_diff, axis=1)

    return score

# name -> (sde, nfe budget) -> sampler spending at most that budget, or None if it cannot.
SIGMA_SPACE: dict[str, Callable[[sde_lib.SDE, int], object | None]] = {
    "ddim": lambda sde, nfe: DDIMSampler(sde, num_steps=nfe),
    "edm_heun": lambda sde, nfe: EDMHeunSampler(sde, num_steps=(nfe + 1) // 2) if nfe >= 3 else None,
    "dpm_solver_2m": lambda sde, nfe: DPMSolverPPSampler(sde, num_steps=nfe, order=2),
    "dpm_solver_3m": lambda sde, nfe: DPMSolverPPSampler(sde, num_steps=nfe, order=3),
    "lms": lambda sde, nfe: LMSSampler(sde, num_steps=nfe),
    "unipc": lambda sde, nfe: UniPCSampler(sde, num_steps=nfe),
    "dpm_solver_2m_sde": lambda sde, nfe: DPMSolverSDESampler(sde, num_steps=nfe, order=2),
    "dpm_solver_3m_sde": lambda sde, nfe: DPMSolverSDESampler(sde, num_steps=nfe, order=3),
}
DETERMINISTIC_ORDER = {"ddim": 1, "edm_heun": 2, "dpm_solver_2m": 2, "dpm_solver_3m": 3, "lms": 4, "unipc": 4}
OTHERS: dict[str, Callable[[sde_lib.SDE, int], object | None]] = {
    "euler_pf_ode": lambda sde, nfe: ODESampler(sde, "euler", num_steps=nfe),
    "euler_maruyama": lambda sde, nfe: PCSampler(sde, "euler_maruyama", "none", num_steps=nfe),
    "pc_reverse_diffusion_langevin": lambda sde, nfe: (
        PCSampler(sde, "reverse_diffusion", "langevin", num_steps=nfe // 2) if nfe >= 2 else None),
}
ADAPTIVE = "ode_tsit5"
ALL = [*SIGMA_SPACE, *OTHERS, ADAPTIVE]


@dataclasses.dataclass(frozen=True)
class Problem:
    """One SDE's benchmark inputs: exact samples `[n, 2]`, the shared prior sample and the keys."""

    sde: sde_lib.SDE
    exact: jax.Array
    x_init: jax.Array
    run_key: jax.Array
    projection_key: jax.Array
    num_projections: int

    def distance(self, x: jax.Array) -> jax.Array:
        return sliced_wasserstein_1(self.projection_key, x, self.exact, self.num_projections)

    def run(self, sampler) -> tuple[float, int, float]:
        """(distance, nfe, seconds incl. compile) of one jitted call of `sampler`."""
        score_fn = mixture_score_fn(self.sde)
        start = time.perf_counter()
        x, nfe = jax.jit(lambda key, x_init: sampler(key, score_fn, self.exact.shape, x_init=x_init))(
            self.run_key, self.x_init)
        distance = float(jax.jit(self.distance)(x))
        return distance, int(nfe), time.perf_counter() - start

    def sweep(self, sampler, sigma_mins: np.ndarray, rhos: np.ndarray) -> np.ndarray:
        """Distances of `sampler` on the Karras schedule at each (sigma_min, rho) pair: one compiled
        program with the pair traced, run once per pair (the same noise for every pair).

        A loop, not `vmap` over the grid, which would hold every pair's samples at once."""
        score_fn = mixture_score_fn(self.sde)

        @jax.jit
        def run_one(key, x_init, sigma_min, rho):
            swept = dataclasses.replace(sampler, schedule="karras", sigma_min=sigma_min, rho=rho)
            return swept(key, score_fn, self.exact.shape, x_init=x_init)[0]

        distance = jax.jit(self.distance)
        dtype = self.exact.dtype
        return np.array([float(distance(run_one(self.run_key, self.x_init, jnp.asarray(sigma_min, dtype),
                                                    jnp.asarray(rho, dtype))))
                         for sigma_min, rho in zip(sigma_mins, rhos, strict=True)])


def noise_floor(rng: jax.Array, n: int, pairs: int, projection_key: jax.Array, num_projections: int
                ) -> tuple[float, float]:
    """Mean and standard deviation of the sliced W1 between two independent exact n-sample sets."""
    @jax.jit
    def one(key):
        a_key, b_key = jax.random.split(key)
        return sliced_wasserstein_1(projection_key, MIXTURE.sample(a_key, n, dtype=jnp.float64),
                                    MIXTURE.sample(b_key, n, dtype=jnp.float64), num_projections)

    values = [float(one(key)) for key in jax.random.split(rng, pairs)]
    return float(np.mean(values)), float(np.std(values))


def _build(table: dict, name: str, sde, budget: int):
    """The sampler `name` at `budget` evaluations, or None (logged) where it rejects that budget."""
    try:
        return table[name](sde, budget)
    except ValueError as error:
        logging.warning("%s at nfe %d skipped: %s", name, budget, error)
        return None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def benchmark_sde(problem: Problem, sde_name: str, names: list[str], budgets: list[int],
                  grid: tuple[np.ndarray, np.ndarray]) -> list[dict]:
    """Result entries (JSON-ready) of every sampler and budget for one SDE."""
    results = []
    for name in names:
        if name == ADAPTIVE:
            for tol in FLAGS.ode_tolerances:
                distance, nfe, seconds = problem.run(ODESampler(problem.sde, rtol=float(tol), atol=float(tol)))
                results.append({"sde": sde_name, "sampler": name, "setting": "default", "nfe": nfe,
                                "sliced_w1": _finite(distance), "rtol": float(tol), "seconds": seconds})
            continue
        table = SIGMA_SPACE if name in SIGMA_SPACE else OTHERS
        for budget in budgets:
            sampler = _build(table, name, problem.sde, budget)
            if sampler is None:
                continue
            distance, nfe, seconds = problem.run(sampler)
            entry = {"sde": sde_name, "sampler": name, "setting": "default", "nfe": nfe,
                     "sliced_w1": _finite(distance), "seconds": seconds}
            results.append(entry)
            logging.info("%s", entry)
            if name not in SIGMA_SPACE or not grid[0].size:
                continue
            start = time.perf_counter()
            swept = problem.sweep(sampler, *grid)
            swept = np.where(np.isfinite(swept), swept, np.inf)
            best = int(np.argmin(swept))
            if swept[best] < distance or not math.isfinite(distance):
                setting = {"schedule": "karras", "sigma_min": float(grid[0][best]), "rho": float(grid[1][best])}
                best_distance = float(swept[best])
            else:
                setting, best_distance = {"schedule": sampler.schedule, "sigma_min": "default"}, distance
            results.append({"sde": sde_name, "sampler": name, "setting": "best", "nfe": nfe,
                            "sliced_w1": _finite(best_distance), **setting,
                            "seconds": time.perf_counter() - start})
            logging.info("%s", results[-1])
    return results


def summary(results: list[dict], floor: float) -> dict:
    """Per SDE and nfe: the best default sampler; per SDE: whether each deterministic solver of order
    >= 2 is within 1.5x the Monte Carlo floor at the largest budget."""
    out = {}
    for sde_name in dict.fromkeys(r["sde"] for r in results):
        rows = [r for r in results if r["sde"] == sde_name and r["setting"] == "default" and r["sliced_w1"] is not None
                and r["sampler"] != ADAPTIVE]
        best_default = {}
        for nfe in sorted({r["nfe"] for r in rows}):
            top = min((r for r in rows if r["nfe"] == nfe), key=lambda r: r["sliced_w1"])
            best_default[str(nfe)] = {"sampler": top["sampler"], "sliced_w1": top["sliced_w1"]}
        largest = max((r["nfe"] for r in rows), default=0)
        floor_band = {name: next((r["sliced_w1"] <= 1.5 * floor for r in rows
                                  if r["sampler"] == name and r["nfe"] == largest), None)
                      for name, order in DETERMINISTIC_ORDER.items() if order >= 2}
        out[sde_name] = {"best_default": best_default, f"order2_in_floor_band_at_{largest}": floor_band}
    return out


def markdown_table(results: list[dict], floor: float, budgets: list[int]) -> str:
    """README table: sliced W1 per sampler (rows) and nfe (columns), `default / best`, per SDE."""
    lines = []
    for sde_name in dict.fromkeys(r["sde"] for r in results):
        lines += [f"**{sde_name}** (Monte Carlo floor {floor:.4f})", "",
                  "| sampler | " + " | ".join(f"{b} nfe" for b in budgets) + " |",
                  "|---|" + "---|" * len(budgets)]
        for name in dict.fromkeys(r["sampler"] for r in results if r["sde"] == sde_name and r["sampler"] != ADAPTIVE):
            cells = []
            for budget in budgets:
                found = {r["setting"]: r["sliced_w1"] for r in results
                         if r["sde"] == sde_name and r["sampler"] == name and r["nfe"] == budget}
                text = "-" if found.get("default") is None else f"{found['default']:.3f}"
                if found.get("best") is not None:
                    text += f" / {found['best']:.3f}"
                cells.append(text)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(results: list[dict], floor: float, path: pathlib.Path) -> None:
    """Log-log plots of distance against nfe, one panel per SDE; default solid, best dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sdes = list(dict.fromkeys(r["sde"] for r in results))
    fig, axes = plt.subplots(1, len(sdes), figsize=(6 * len(sdes), 4.5), squeeze=False)
    for ax, sde_name in zip(axes[0], sdes, strict=True):
        for i, name in enumerate(dict.fromkeys(r["sampler"] for r in results if r["sde"] == sde_name)):
            for setting, style in (("default", "-"), ("best", "--")):
                points = sorted((r["nfe"], r["sliced_w1"]) for r in results if r["sde"] == sde_name
                                and r["sampler"] == name and r["setting"] == setting and r["sliced_w1"] is not None)
                if points:
                    ax.plot(*zip(*points, strict=True), style, marker="o", markersize=3, color=f"C{i % 10}",
                            label=name if setting == "default" else None)
        ax.axhline(floor, color="gray", linestyle=":", label="exact vs exact (MC floor)")
        ax.set(xscale="log", yscale="log", xlabel="score evaluations per sample (nfe)",
               ylabel="sliced W1 to exact samples", title=f"2-D mixture, {sde_name} (dashed: best setting)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> None:
    del argv
    # float64 throughout: the comparison is about discretisation error, not rounding (and float32
    # runs of 20k samples down to sigma_min 0.002 were seen to stall XLA's CPU runtime, jax 0.10).
    jax.config.update("jax_enable_x64", True)
    names = FLAGS.samplers or ALL
    unknown = sorted(set(names) - set(ALL))
    if unknown:
        raise app.UsageError(f"unknown samplers {unknown}; known: {', '.join(ALL)}")
    unknown = sorted(set(FLAGS.sdes) - set(sde_lib.SDES.names()))
    if unknown or not FLAGS.sdes:
        raise app.UsageError(f"unknown SDEs {unknown or FLAGS.sdes}; known: {', '.join(sde_lib.SDES.names())}")
    budgets = sorted({int(n) for n in FLAGS.nfe})
    if not budgets or budgets[0] < 1:
        raise app.UsageError(f"--nfe must list positive integers, got {FLAGS.nfe}")
    sigma_mins, rhos = (np.asarray([float(v) for v in values]) for values in (FLAGS.sweep_sigma_min, FLAGS.sweep_rho))
    grid = tuple(np.ravel(g) for g in np.meshgrid(sigma_mins, rhos, indexing="ij"))
    out = pathlib.Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)

    exact_key, projection_key, noise_key, prior_key, run_key = jax.random.split(jax.random.key(FLAGS.seed), 5)
    exact = MIXTURE.sample(exact_key, FLAGS.num_samples, dtype=jnp.float64)
    floor, floor_std = noise_floor(noise_key, FLAGS.num_samples, FLAGS.noise_pairs, projection_key,
                                   FLAGS.num_projections)
    logging.info("exact-vs-exact sliced W1: %.4f +- %.4f", floor, floor_std)
    results, sdes = [], {}
    for sde_name in FLAGS.sdes:
        sde = sde_lib.build_sde(sde_name, **SDE_KWARGS.get(sde_name, {}))
        sdes[sde_name] = repr(sde)
        problem = Problem(sde, exact, sde.prior_sampling(prior_key, exact.shape, exact.dtype), run_key, projection_key,
                          FLAGS.num_projections)
        results += benchmark_sde(problem, sde_name, names, budgets, grid)

    report = {
        "sdes": sdes, "num_samples": FLAGS.num_samples, "num_projections": FLAGS.num_projections,
        "seed": FLAGS.seed, "noise_floor": {"mean": floor, "std": floor_std, "pairs": FLAGS.noise_pairs},
        "sweep": {"sigma_min": sigma_mins.tolist(), "rho": rhos.tolist(), "schedule": "karras"},
        "device": str(jax.devices()[0]), "summary": summary(results, floor), "results": results,
    }
    (out / "benchmark_samplers.json").write_text(json.dumps(report, indent=1))
    (out / "benchmark_samplers.md").write_text(markdown_table(results, floor, budgets))
    plot(results, floor, out / "benchmark_samplers.png")
    print(json.dumps(report))
    logging.info("wrote %s, .md and .png", out / "benchmark_samplers.json")


if __name__ == "__main__":
    app.run(main)
