"""Convert the FID Inception-v3 weights of pytorch-fid into the `.npz` that `score-sde evaluate
--feature_extractor=inception --inception_weights=FILE` reads.

    pip install torch   # only for this one conversion
    python -m scripts.convert_inception_weights pt_inception-2015-12-05-6726825d.pth fid_inception.npz

The input is read with `torch.load(..., weights_only=True)` (tensors only, no arbitrary objects);
an `.npz` input is re-checked and copied. The output holds plain float32 arrays, checked key by
key and shape by shape against the network before it is written; an existing output is not
overwritten unless `--force`.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

from training.inception import variables_from_state_dict


def read_state_dict(path: pathlib.Path) -> dict[str, np.ndarray]:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    try:
        import torch  # deferred: torch is optional, needed only to read a .pth
    except ImportError as error:
        raise SystemExit("reading a .pth file needs torch: pip install torch (CPU build is enough)") from error
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise SystemExit(f"{path} holds a {type(state).__name__}, not a state dict")
    return {key: value.detach().cpu().numpy() for key, value in state.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=pathlib.Path, help="pytorch-fid's .pth (or an .npz to check)")
    parser.add_argument("output", type=pathlib.Path, help="the .npz to write")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    args = parser.parse_args(argv)
    if not args.source.is_file():
        raise SystemExit(f"{args.source} does not exist")
    if args.output.exists() and not args.force:
        raise SystemExit(f"{args.output} exists; pass --force to overwrite it")
    arrays = {k: np.asarray(v, np.float32) for k, v in read_state_dict(args.source).items()
              if not k.endswith("num_batches_tracked")}
    variables_from_state_dict(arrays, source=str(args.source))  # raises, naming what does not fit
    partial = args.output.with_name(args.output.name + ".partial.npz")
    np.savez(partial, **arrays)
    partial.replace(args.output)  # never leaves a half-written file under the final name
    print(f"wrote {len(arrays)} arrays to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
