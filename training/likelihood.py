"""Likelihood of a data split under a trained network: bits/dim (images) or nats/dim (points).

`split_likelihood` runs the probability-flow log-likelihood of `samplers.likelihood` (Song et al.
2021, sec. 4.3) over batches on the mesh, with every setting an explicit argument; the
evaluation protocol (`training.evaluate.split_bits_per_dim`) reads them from a config and opens the
split. Builds on `training.experiment`.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from absl import logging

from samplers import likelihood
from training.experiment import Experiment, make_score_fn
from training.sharding import batch_sharding, replicated, shard_batch
from training.state import Params

NUM_WORST = 3


def split_likelihood(exp: Experiment, params: Params, batches: Sequence[dict], rng: jax.Array, *,
                     batch_size: int, num_probes: int, rtol: float, atol: float, bin_width: float | None,
                     max_examples: int | None = None, max_steps: int = 4096) -> dict:
    """Negative log-likelihood of the examples of `batches` (each {"image": [b <= batch_size, ...]}
    in the model's data range, in order) under the probability flow of `params`.

    `batch_size` is the compiled batch, a multiple of the mesh size; a shorter batch is padded.
    Divergence by Hutchinson with `num_probes` Rademacher probes; batch i uses `fold_in(rng, i)`;
    solver tolerances `rtol` / `atol`. nfe is the mean per batch.

    Images (`bin_width` the width of one 8-bit bin in the model's range, the data already
    dequantised): bits/dim, {"bpd", "bpd_stderr", "bpd_median", "worst_examples", "num_examples",
    "nfe", "bin_width", "dequantization"}; "worst_examples" lists the `NUM_WORST` largest
    [position in the split, bpd] (the examples a mean far above the median comes from). Continuous data (`bin_width=None`, 2-D points): nats/dim,
    {"nll_nats_per_dim", "nll_nats_per_dim_stderr", "num_examples", "nfe", "unit"} (no "bpd").
    Both carry the failure counts "num_solves" (batches), "num_failed_solves" (batches with an
    example's solve stopped at `max_steps`), "num_unsolved_examples" and "num_nonfinite_examples": those examples are left out
    of the statistics (never averaged in), and "num_examples" counts the others.
    """
    check_max_examples(max_examples)

    def nll(params, x, key):
        score_fn = make_score_fn(exp.sde, exp.model, params, continuous=exp.continuous, precond=exp.precond)
        out = likelihood.log_likelihood(key, exp.sde, score_fn, x, num_probes=num_probes, rtol=rtol, atol=atol,
                                        max_steps=max_steps)
        return out.logp, out.nfe, out.solved

    mesh = exp.mesh
    nll_fn = jax.jit(nll, in_shardings=(replicated(mesh), batch_sharding(mesh), replicated(mesh)),
                     # replicated: every process reads every example's value (multi-process runs)
                     out_shardings=(replicated(mesh), replicated(mesh), replicated(mesh)))
    logps, nfes, unsolved, remaining = [], [], [], max_examples or float("inf")
    for i in range(len(batches)):
        if remaining <= 0:
            break
        x = np.asarray(batches[i]["image"])[: int(min(remaining, batch_size))]
        count = len(x)
        # Pad to the compiled batch with copies of the last example (each example is solved on its
        # own, so padding changes nothing); their values are dropped.
        x = np.concatenate([x, np.repeat(x[-1:], batch_size - count, axis=0)])
        logp, nfe, solved = nll_fn(params, shard_batch(x, batch_sharding(mesh)), jax.random.fold_in(rng, i))
        logps.append(np.asarray(logp)[:count])
        nfes.append(int(nfe))
        unsolved.append(~np.asarray(solved)[:count])
        remaining -= count
    logp = np.concatenate(logps).astype(np.float64)
    failed = np.concatenate(unsolved)
    nonfinite = ~np.isfinite(logp) & ~failed
    dims = int(np.prod(exp.data_shape))
    # A solve stopped at max_steps has no likelihood, nor has a non-finite value: they are counted
    # and reported, and the statistics are over the other examples.
    record = {"num_examples": int((~failed & ~nonfinite).sum()), "nfe": float(np.mean(nfes)),
              "num_solves": len(nfes), "num_failed_solves": int(sum(u.any() for u in unsolved)),
              "num_unsolved_examples": int(failed.sum()), "num_nonfinite_examples": int(nonfinite.sum())}
    if failed.any() or nonfinite.any():
        logging.warning("Likelihood: %d of %d examples left out (%d in solves stopped at max_steps=%d, %d "
                        "non-finite)", (failed | nonfinite).sum(), len(logp), failed.sum(), max_steps,
                        nonfinite.sum())
    kept = np.flatnonzero(~failed & ~nonfinite)
    logp = logp[kept]
    if not len(logp):  # nothing to average: say so (null in JSON), never a NaN
        return {**record, "bpd" if bin_width is not None else "nll_nats_per_dim": None}
    if bin_width is None:
        nats = -logp / dims
        return {"nll_nats_per_dim": float(nats.mean()), "nll_nats_per_dim_stderr": _stderr(nats), **record,
                "unit": "nats/dim of continuous 2-D points (no dequantization)"}
    bpd = np.asarray(likelihood.bits_per_dim(logp, dims, bin_width))
    # The median and the worst examples beside the mean: one example far outside the training
    # data's support can dominate the mean by orders of magnitude, and it should be findable.
    worst = np.argsort(-bpd)[:NUM_WORST]
    return {"bpd": float(bpd.mean()), "bpd_stderr": _stderr(bpd), "bpd_median": float(np.median(bpd)),
            "worst_examples": [[int(kept[i]), float(bpd[i])] for i in worst], **record, "bin_width": bin_width,
            "dequantization": "uniform"}


def check_max_examples(max_examples: int | None) -> None:
    """None (all examples) or a positive count."""
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples must be positive, got {max_examples}")


def _stderr(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
