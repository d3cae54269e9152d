"""Sampler error against the number of score evaluations, on a 2-D Gaussian mixture with exact scores.

    python -m scripts.benchmark_samplers --sdes=vpsde,subvpsde,vesde --nfe=5,10,20,35,100 --out=/tmp/bench

For each SDE, sampler and budget of score evaluations (nfe), the sampler is built with the step count
that spends that budget and run once (jitted) from one shared prior sample at T (so the deterministic
samplers differ only by their discretisation error) with the exact mixture score
(`sde_lib.GaussianMixture.score_fn`), and scored by the sliced 1-Wasserstein distance
(`samplers.sample_distance.sliced_wasserstein_1`, computed on the host) of its `--num_samples` outputs
to as many exact samples. Each sigma-space solver runs with its defaults ("default"), with the noise levels its peers
use by default ("peer": k-diffusion's Karras schedule, rho = 7 from sigma(T) down to sigma(eps); DDIM's
own time-uniform steps for `ddim`), and over a sweep of its last noise level sigma_min and Karras
schedule exponent rho ("best": the lowest of the sweep, rescored on all samples, and the default;
rho = 100 is nearly log-SNR-uniform). The sweep scores each setting on the first `--sweep_samples`
samples, then reruns its winner on all of them. The adaptive probability-flow ODE sweeps its tolerance
instead and reports the nfe it used. The same distance between two independent exact sample sets (mean over
`--noise_pairs` pairs) is the Monte Carlo floor: no sampler can be told apart from exact below it,
and a converged solver lands anywhere within two of its standard deviations (`floor_band`), as one
exact set against one run is one draw of that distance. `--sweep_max_nfe` limits the sweep to the
smaller budgets (where the defaults are at the floor a sweep has nothing to find). The table ends
with issue 12's targets (`TARGETS`), each marked met or not.
The VE SDE spans EDM's sigma range [0.002, 80]; VP and sub-VP have their defaults.

Writes `benchmark_samplers.json` (also printed to stdout as one JSON document), a log-log plot per SDE
`benchmark_samplers.png` and the README table `benchmark_samplers.md` into `--out`.
"""
from __future__ import annotations

import dataclasses
import functools
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
from samplers.ipndm import IPNDMSampler
from samplers.lms import LMSSampler
from samplers.ode import ODESampler
from samplers.pc import PCSampler
from samplers.unipc import UniPCSampler

flags.DEFINE_list("sdes", ["vpsde", "subvpsde", "vesde"], "SDEs whose exact mixture scores are used.")
flags.DEFINE_list("nfe", ["5", "10", "20", "35", "100"], "Score-evaluation budgets to sweep.")
flags.DEFINE_list("samplers", None, "Samplers to run (default: all listed in this script).")
flags.DEFINE_list("ode_tolerances", ["1e-2", "1e-3", "1e-4"], "rtol = atol of the adaptive ODE.")
flags.DEFINE_list("sweep_sigma_min", ["0.005", "0.02", "0.05", "0.1", "0.15", "0.25", "0.4"],
                  "Last noise levels of the sweep (with each --sweep_rho); empty: defaults only.")
flags.DEFINE_list("sweep_rho", ["3", "7", "100"], "Karras exponents of the sweep.")
flags.DEFINE_integer("sweep_max_nfe", 0, "Sweep only budgets up to this many evaluations (0: all); above, "
                     "\"best\" is not run (the defaults sit at the floor there).")
flags.DEFINE_integer("num_samples", 100_000, "Samples per sampler run (and exact samples).")
flags.DEFINE_integer("sweep_samples", 20_000, "Samples per run of the sigma_min x rho sweep (its winner is "
                     "rerun with --num_samples).")
flags.DEFINE_integer("num_projections", 64, "Random directions of the sliced Wasserstein distance.")
flags.DEFINE_integer("noise_pairs", 4, "Exact-vs-exact pairs averaged for the Monte Carlo floor.")
flags.DEFINE_integer("seed", 0, "Seed of the sampler runs, exact samples and projections.")
flags.DEFINE_string("out", "benchmark_samplers", "Output directory for the JSON file, plot and table.")
flags.DEFINE_list("merge", None, "JSON reports of earlier runs (e.g. one per SDE, run side by side) to combine "
                  "into one report, table and plot in --out, running nothing.")
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
    "ipndm": lambda sde, nfe: IPNDMSampler(sde, num_steps=nfe),
    "ipndm_v": lambda sde, nfe: IPNDMSampler(sde, num_steps=nfe, variable_step=True),
    "unipc": lambda sde, nfe: UniPCSampler(sde, num_steps=nfe),
    "dpm_solver_2m_sde": lambda sde, nfe: DPMSolverSDESampler(sde, num_steps=nfe, order=2),
    "dpm_solver_3m_sde": lambda sde, nfe: DPMSolverSDESampler(sde, num_steps=nfe, order=3),
    # order 1, eta = 1: DDPM's ancestral step q(x_s | x_t, x_0 = D), the stochastic baseline
    "ddpm_ancestral": lambda sde, nfe: DPMSolverSDESampler(sde, num_steps=nfe, order=1),
}
DETERMINISTIC_ORDER = {"ddim": 1, "edm_heun": 2, "dpm_solver_2m": 2, "dpm_solver_3m": 3, "lms": 4, "ipndm": 2,
                       "ipndm_v": 4, "unipc": 4}
OTHERS: dict[str, Callable[[sde_lib.SDE, int], object | None]] = {
    "euler_pf_ode": lambda sde, nfe: ODESampler(sde, "euler", num_steps=nfe),
    "euler_maruyama": lambda sde, nfe: PCSampler(sde, "euler_maruyama", "none", num_steps=nfe),
    "pc_reverse_diffusion_langevin": lambda sde, nfe: (
        PCSampler(sde, "reverse_diffusion", "langevin", num_steps=nfe // 2) if nfe >= 2 else None),
}
ADAPTIVE = "ode_tsit5"
ALL = [*SIGMA_SPACE, *OTHERS, ADAPTIVE]


def projection_directions(key: jax.Array, dim: int, num_projections: int) -> np.ndarray:
    """The unit directions `[dim, P]` that `sliced_wasserstein_1(key, ...)` draws."""
    directions = np.asarray(jax.random.normal(key, (dim, num_projections), jnp.float64))
    return directions / np.linalg.norm(directions, axis=0, keepdims=True)


def sorted_projections(x, directions: np.ndarray) -> np.ndarray:
    """Projections of `x: [n, dim]` on `directions`, sorted per direction: `[n, P]`.

    On the host: XLA's CPU sort of [100k, 64] took 10-25 s against numpy's 0.7 s (jax 0.10)."""
    return np.sort(np.asarray(x, np.float64) @ directions, axis=0)


def sliced_w1_to(x, reference: np.ndarray, directions: np.ndarray) -> float:
    """`samplers.sample_distance.sliced_wasserstein_1` of x to the samples whose sorted projections
    are `reference` (computed once per exact set)."""
    return float(np.mean(np.abs(sorted_projections(x, directions) - reference)))


@dataclasses.dataclass(frozen=True)
class Problem:
    """One SDE's benchmark inputs: exact samples `[n, 2]`, the shared prior sample and the keys."""

    sde: sde_lib.SDE
    exact: jax.Array
    x_init: jax.Array
    run_key: jax.Array
    directions: np.ndarray

    @functools.cached_property
    def reference(self) -> np.ndarray:
        return sorted_projections(self.exact, self.directions)

    def distance(self, x: jax.Array) -> float:
        return sliced_w1_to(x, self.reference, self.directions)

    def subset(self, n: int) -> Problem:
        """The same problem on the first n exact samples and prior draws."""
        return Problem(self.sde, self.exact[:n], self.x_init[:n], self.run_key, self.directions)

    def run(self, sampler) -> tuple[float, int, float]:
        """(distance, nfe, seconds incl. compile) of one jitted call of `sampler`."""
        score_fn = mixture_score_fn(self.sde)
        start = time.perf_counter()
        x, nfe = jax.jit(lambda key, x_init: sampler(key, score_fn, self.exact.shape, x_init=x_init))(
            self.run_key, self.x_init)
        return self.distance(x), int(nfe), time.perf_counter() - start

    def sweep(self, sampler, sigma_mins, rhos, schedule: str = "karras") -> np.ndarray:
        """Distances of `sampler` on `schedule` at each (sigma_min, rho) pair: one compiled program per
        sampler and sample count, given each pair's host schedule (`SigmaSpaceSolver.run`), run once per
        pair (the same noise for every pair)."""
        run_one = _swept_program(sampler)
        distances = []
        for sigma_min, rho in zip(np.atleast_1d(sigma_mins), np.atleast_1d(rhos), strict=True):
            swept = dataclasses.replace(sampler, schedule=schedule, sigma_min=float(sigma_min), rho=float(rho))
            distances.append(self.distance(run_one(self.run_key, self.x_init,
                                                   swept.host_schedule(self.x_init, None))))
        return np.array(distances)


@functools.cache
def _swept_program(sampler):
    """`sampler` as a jitted function of (key, x_init, host schedule)."""
    score_fn = mixture_score_fn(sampler.sde)

    @jax.jit
    def run_one(key, x_init, schedule):
        return sampler.run(key, score_fn, x_init.shape, x_init, None, schedule)[0]

    return run_one


def noise_floor(rng: jax.Array, n: int, pairs: int, directions: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the sliced W1 between two independent exact n-sample sets."""
    sample = jax.jit(lambda key: MIXTURE.sample(key, n, dtype=jnp.float64))
    values = []
    for key in jax.random.split(rng, pairs):
        a_key, b_key = jax.random.split(key)
        values.append(sliced_w1_to(sample(a_key), sorted_projections(sample(b_key), directions), directions))
    return float(np.mean(values)), float(np.std(values))


def peer_setting(sampler) -> dict:
    """The noise levels peers use by default for `sampler`'s method: k-diffusion's Karras schedule
    (rho = 7, sigma(T) down to sigma(eps)), or for DDIM its paper's uniform steps in t down to eps."""
    sigma_min = float(sampler.sde.sigma(jnp.asarray(sampler.eps, jnp.float64)))
    if isinstance(sampler, DDIMSampler):
        return {"schedule": "uniform_t", "sigma_min": sigma_min}
    return {"schedule": "karras", "sigma_min": sigma_min, "rho": 7.0}


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
                  grid: tuple[np.ndarray, np.ndarray], sweep_samples: int) -> list[dict]:
    """Result entries (JSON-ready) of every sampler and budget for one SDE."""
    results = []

    def record(entry: dict) -> None:
        results.append({"sde": sde_name, **entry})
        logging.info("%s", results[-1])

    sweep_problem = problem.subset(sweep_samples)
    for name in names:
        if name == ADAPTIVE:
            for tol in FLAGS.ode_tolerances:
                distance, nfe, seconds = problem.run(ODESampler(problem.sde, rtol=float(tol), atol=float(tol)))
                record({"sampler": name, "setting": "default", "nfe": nfe, "sliced_w1": _finite(distance),
                        "rtol": float(tol), "seconds": seconds})
            continue
        table = SIGMA_SPACE if name in SIGMA_SPACE else OTHERS
        for budget in budgets:
            sampler = _build(table, name, problem.sde, budget)
            if sampler is None:
                continue
            distance, nfe, seconds = problem.run(sampler)
            record({"sampler": name, "setting": "default", "nfe": nfe, "sliced_w1": _finite(distance),
                    "seconds": seconds})
            if name not in SIGMA_SPACE:
                continue
            peer = peer_setting(sampler)
            start = time.perf_counter()
            peer_distance = float(problem.sweep(sampler, peer["sigma_min"], peer.get("rho", 7.0), peer["schedule"])[0])
            record({"sampler": name, "setting": "peer", "nfe": nfe, "sliced_w1": _finite(peer_distance), **peer,
                    "seconds": time.perf_counter() - start})
            if not grid[0].size or 0 < FLAGS.sweep_max_nfe < budget:
                continue
            start = time.perf_counter()
            swept = sweep_problem.sweep(sampler, *grid)
            swept = np.where(np.isfinite(swept), swept, np.inf)
            best = int(np.argmin(swept))
            setting = {"schedule": "karras", "sigma_min": float(grid[0][best]), "rho": float(grid[1][best])}
            best_distance = float(problem.sweep(sampler, setting["sigma_min"], setting["rho"])[0])
            if not best_distance < distance and math.isfinite(distance):
                setting, best_distance = {"schedule": sampler.schedule, "sigma_min": "default"}, distance
            record({"sampler": name, "setting": "best", "nfe": nfe, "sliced_w1": _finite(best_distance), **setting,
                    "seconds": time.perf_counter() - start})
    return results


def floor_band(noise: dict) -> float:
    """The largest distance a sampler run can show and still not be told apart from exact sampling: the
    exact-vs-exact mean plus two standard deviations (a run scored against the one exact set is one
    draw of that distance, so a converged solver lands anywhere in it)."""
    return noise["mean"] + 2.0 * noise["std"]


def summary(results: list[dict], band: float, budgets: list[int]) -> dict:
    """Per SDE and budget: the best sampler at its defaults and at its peers' settings (runs of fewer
    evaluations count for the next budget up, `_column`); per SDE: whether each deterministic solver of
    order >= 2 is in the floor band (`floor_band`) at the largest budget, and their lowest distance
    there (the limit they converge to: the exact flow of the shared prior draw, itself one draw of the
    floor's distribution) and spread."""
    out = {}
    for sde_name in dict.fromkeys(r["sde"] for r in results):
        rows = {setting: [r for r in results if r["sde"] == sde_name and r["setting"] == setting
                          and r["sliced_w1"] is not None and r["sampler"] != ADAPTIVE]
                for setting in ("default", "peer")}
        best = {}
        for setting, chosen in rows.items():
            best[f"best_{setting}"] = {
                str(budget): {k: top[k] for k in ("sampler", "sliced_w1", "nfe")}
                for budget in budgets
                if any(_column(r["nfe"], budgets) == budget for r in chosen)
                for top in [min((r for r in chosen if _column(r["nfe"], budgets) == budget),
                                key=lambda r: r["sliced_w1"])]}
        largest = max(budgets)
        in_band = {name: next((r["sliced_w1"] <= band for r in rows["default"]
                               if r["sampler"] == name and _column(r["nfe"], budgets) == largest), None)
                   for name, order in DETERMINISTIC_ORDER.items() if order >= 2}
        final = [r["sliced_w1"] for r in rows["default"] if _column(r["nfe"], budgets) == largest
                 and DETERMINISTIC_ORDER.get(r["sampler"], 0) >= 2]
        out[sde_name] = {**best, f"order2_in_floor_band_at_{largest}": in_band,
                         f"order2_limit_at_{largest}": min(final, default=None),
                         f"order2_spread_at_{largest}": max(final) - min(final) if final else None}
    return out


TARGETS = {5: 0.3, 10: 0.08, 20: 0.018}
"""Issue 12's bounds on the best sliced W1 with default settings on VE per budget (1.5x under VP and
sub-VP), besides every deterministic order >= 2 solver in the floor band at the largest budget."""


def targets(summary_by_sde: dict, band: float) -> list[dict]:
    """Each of issue 12's targets with the measured value and whether it is met."""
    out = []
    for sde_name, s in summary_by_sde.items():
        factor = 1.0 if sde_name == "vesde" else 1.5
        for budget, bound in TARGETS.items():
            top = s["best_default"].get(str(budget))
            if top is not None:
                out.append({"target": f"{sde_name}: best default at {budget} nfe <= {factor * bound:.3g}",
                            "value": f"{top['sliced_w1']:.4f} ({top['sampler']})",
                            "met": top["sliced_w1"] <= factor * bound})
        key = next(k for k in s if k.startswith("order2_in_floor_band_at_"))
        largest = key.rsplit("_", 1)[1]
        outside = [name for name, ok in s[key].items() if not ok]
        out.append({"target": f"{sde_name}: every deterministic solver of order >= 2 <= {band:.4f} (floor band) "
                              f"at {largest} nfe",
                    "value": "all in" if not outside else "outside or not run: " + ", ".join(outside),
                    "met": not outside})
        limit, spread = s[f"order2_limit_at_{largest}"], s[f"order2_spread_at_{largest}"]
        if limit is not None:
            out.append({"target": f"{sde_name}: the same solvers converged at {largest} nfe (within 5% of their "
                                  f"common limit, the exact flow of this prior draw)",
                        "value": f"limit {limit:.4f} ({limit / band:.2f}x the floor band), spread {spread:.4f}",
                        "met": spread <= 0.05 * limit})
    return out


SETTINGS = ("default", "peer", "best")


def _column(nfe: int, budgets: list[int]) -> int | None:
    """The budget a run of `nfe` evaluations spent (EDM Heun uses 2n - 1, PC 2 per step)."""
    return min((b for b in budgets if b >= nfe), default=None)


def markdown_table(report: dict, budgets: list[int]) -> str:
    """README table: sliced W1 per sampler (rows) and nfe (columns), `default / peer / best`, per SDE;
    the adaptive ODE's (nfe, W1) per tolerance; the targets, met or not."""
    results, noise = report["results"], report["noise_floor"]
    band = floor_band(noise)
    lines = [f"{report['num_samples']} samples per run; Monte Carlo floor (exact vs exact, {noise['pairs']} pairs) "
             f"{noise['mean']:.4f} +- {noise['std']:.4f}, floor band (mean + 2 std) {band:.4f}.", ""]
    for sde_name in dict.fromkeys(r["sde"] for r in results):
        sweep = report["sweep"][sde_name]
        lines += [f"**{sde_name}** (cells: default / peer / best; best: the lowest of the default and the Karras "
                  f"sweep sigma_min in {sweep['sigma_min']} x rho in {sweep['rho']}, {sweep['samples']} samples "
                  f"each, the winner rescored on all, run up to {sweep['max_nfe']} nfe)", "",
                  "| sampler | " + " | ".join(f"{b} nfe" for b in budgets) + " |",
                  "|---|" + "---|" * len(budgets)]
        for name in dict.fromkeys(r["sampler"] for r in results if r["sde"] == sde_name and r["sampler"] != ADAPTIVE):
            cells = []
            for budget in budgets:
                found = {r["setting"]: r["sliced_w1"] for r in results if r["sde"] == sde_name
                         and r["sampler"] == name and _column(r["nfe"], budgets) == budget}
                cells.append(" / ".join("-" if found.get(setting) is None else f"{found[setting]:.3f}"
                                        for setting in SETTINGS if setting in found or setting == "default"))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        adaptive = [f"rtol {r['rtol']:g}: {r['nfe']} nfe, {r['sliced_w1']:.3f}" for r in results
                    if r["sde"] == sde_name and r["sampler"] == ADAPTIVE and r["sliced_w1"] is not None]
        if adaptive:
            lines += ["", f"{ADAPTIVE} (adaptive probability-flow ODE, rtol = atol): " + "; ".join(adaptive) + "."]
        lines.append("")
    lines += ["**Targets** (issue 12)", ""]
    lines += [f"- {'met' if t['met'] else 'NOT met'}: {t['target']}: {t['value']}"
              for t in targets(report["summary"], band)]
    return "\n".join(lines) + "\n"


def plot(results: list[dict], floor: float, path: pathlib.Path) -> None:
    """Log-log plots of distance against nfe, one column per SDE: defaults (solid) and peers' settings
    (dotted) above, the best swept setting below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sdes = list(dict.fromkeys(r["sde"] for r in results))
    names = list(dict.fromkeys(r["sampler"] for r in results))
    fig, axes = plt.subplots(2, len(sdes), figsize=(6 * len(sdes), 9), squeeze=False, sharey=True)
    for column, sde_name in enumerate(sdes):
        for row, panel in enumerate((("default", "peer"), ("best",))):
            ax = axes[row, column]
            for i, name in enumerate(names):
                for setting in panel:
                    points = sorted((r["nfe"], r["sliced_w1"]) for r in results if r["sde"] == sde_name
                                    and r["sampler"] == name and r["setting"] == setting and r["sliced_w1"] is not None)
                    if points:
                        ax.plot(*zip(*points, strict=True), ":" if setting == "peer" else "-", marker="o",
                                markersize=3, color=f"C{i % 10}", linewidth=1.2 if i < 10 else 2.2,
                                label=name if setting == panel[0] else None)
            ax.axhline(floor, color="gray", linestyle="--", label="exact vs exact (MC floor)")
            title = "defaults (dotted: peers' schedule)" if row == 0 else "best of the sigma_min x rho sweep"
            ax.set(xscale="log", yscale="log", xlabel="score evaluations per sample (nfe)",
                   ylabel="sliced W1 to exact samples", title=f"2-D mixture, {sde_name}: {title}")
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(report: dict, budgets: list[int], out: pathlib.Path) -> None:
    """The JSON report, README table and plot of `report` into `out`."""
    (out / "benchmark_samplers.json").write_text(json.dumps(report, indent=1))
    (out / "benchmark_samplers.md").write_text(markdown_table(report, budgets))
    plot(report["results"], report["noise_floor"]["mean"], out / "benchmark_samplers.png")


def merge(paths: list[str], budgets: list[int]) -> dict:
    """One report from reports of the same samples (seed, sizes), e.g. one per SDE."""
    reports = []
    for path in paths:
        try:
            reports.append(json.loads(pathlib.Path(path).read_text()))
        except (OSError, ValueError) as error:
            raise app.UsageError(f"--merge: cannot read report {path}: {error}") from None
    keys = ("num_samples", "num_projections", "seed", "noise_floor")
    for path, report in zip(paths[1:], reports[1:], strict=True):
        if any(report.get(k) != reports[0].get(k) for k in keys):
            raise app.UsageError(f"--merge: {path} differs from {paths[0]} in one of {', '.join(keys)}")
    merged = {**reports[0], "sdes": {}, "sweep": {}, "results": []}
    for report in reports:
        merged["sdes"].update(report["sdes"])
        merged["sweep"].update(report["sweep"])
        merged["results"] += report["results"]
    merged["summary"] = summary(merged["results"], floor_band(merged["noise_floor"]), budgets)
    return merged


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
    if FLAGS.merge:
        report = merge(FLAGS.merge, budgets)
        write_outputs(report, budgets, out)
        print(json.dumps(report))
        return

    exact_key, projection_key, noise_key, prior_key, run_key = jax.random.split(jax.random.key(FLAGS.seed), 5)
    exact = MIXTURE.sample(exact_key, FLAGS.num_samples, dtype=jnp.float64)
    directions = projection_directions(projection_key, exact.shape[1], FLAGS.num_projections)
    floor, floor_std = noise_floor(noise_key, FLAGS.num_samples, FLAGS.noise_pairs, directions)
    logging.info("exact-vs-exact sliced W1: %.4f +- %.4f", floor, floor_std)
    results, sdes = [], {}
    sweep = {"sigma_min": sigma_mins.tolist(), "rho": rhos.tolist(), "schedule": "karras",
             "samples": FLAGS.sweep_samples, "max_nfe": FLAGS.sweep_max_nfe or max(budgets)}
    for sde_name in FLAGS.sdes:
        sde = sde_lib.build_sde(sde_name, **SDE_KWARGS.get(sde_name, {}))
        sdes[sde_name] = repr(sde)
        problem = Problem(sde, exact, sde.prior_sampling(prior_key, exact.shape, exact.dtype), run_key, directions)
        results += benchmark_sde(problem, sde_name, names, budgets, grid, min(FLAGS.sweep_samples, FLAGS.num_samples))
        report = {
            "sdes": sdes, "num_samples": FLAGS.num_samples, "num_projections": FLAGS.num_projections,
            "seed": FLAGS.seed, "noise_floor": {"mean": floor, "std": floor_std, "pairs": FLAGS.noise_pairs},
            "sweep": dict.fromkeys(sdes, sweep),
            "device": str(jax.devices()[0]), "results": results,
        }
        report["summary"] = summary(results, floor_band(report["noise_floor"]), budgets)
        write_outputs(report, budgets, out)  # after each SDE, so that a long run leaves its finished part
    print(json.dumps(report))
    logging.info("wrote %s, .md and .png", out / "benchmark_samplers.json")


if __name__ == "__main__":
    app.run(main)
