"""Convert a released score_sde checkpoint into a workdir that `score-sde sample / likelihood /
evaluate / inpaint` use with the same config.

    python -m scripts.convert_checkpoint exp/ve/cifar10_ncsnpp_continuous/checkpoint_24 \\
        --config=configs/ve/cifar10_ncsnpp_continuous.py --workdir=workdir/ve_cifar10
    pip install torch   # only to read a .pth of the PyTorch port
    python -m scripts.convert_checkpoint checkpoint_24.pth \\
        --config=configs/ve/cifar10_ncsnpp_continuous.py --workdir=workdir/ve_cifar10

SOURCE is a checkpoint of the JAX code (`checkpoint_<n>`, Flax msgpack) or of the PyTorch port
(`.pth`, read with `torch.load(..., weights_only=True)`); `--format` overrides the detection.
`--config.<key>=value` overrides config keys as for `score-sde`. Every array is checked against
the config's network before anything is written; the workdir must hold no checkpoints yet.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

from configs.load import load_config
from configs.validate import ConfigError
from models.convert import ConversionError
from training.reference_checkpoint import ReferenceWeights, pytorch_weights, read_flax2021, save_converted

_TORCH_ZIP = b"PK\x03\x04"  # torch.save's archive format


def detect_format(path: pathlib.Path) -> str:
    """"pytorch" for a torch archive or a .pth / .pt name, else "flax2021" (msgpack)."""
    with path.open("rb") as f:
        head = f.read(4)
    return "pytorch" if head == _TORCH_ZIP or path.suffix in (".pth", ".pt") else "flax2021"


def _numpy(value):
    """Tensors (also inside lists and dicts) as numpy arrays; other values unchanged."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    if isinstance(value, dict):
        return {key: _numpy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_numpy(item) for item in value]
    return value


def read_pytorch(path: pathlib.Path) -> ReferenceWeights:
    try:
        import torch
    except ImportError:
        raise SystemExit("reading a .pth checkpoint needs torch: pip install torch (the CPU build is enough)") from None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for unreadable or unsafe files
        raise SystemExit(f"{path} cannot be read as a PyTorch checkpoint: {type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''}") from None
    if not isinstance(checkpoint, dict):
        raise SystemExit(f"{path} holds a {type(checkpoint).__name__}, not a score_sde_pytorch checkpoint dict")
    # the optimiser state is not carried over (a fresh one is written)
    return pytorch_weights({key: _numpy(value) for key, value in checkpoint.items() if key != "optimizer"}, str(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=pathlib.Path, help="checkpoint_<n> (JAX) or .pth (PyTorch) of score_sde")
    parser.add_argument("--config", required=True, help="the config the checkpoint was trained with")
    parser.add_argument("--workdir", required=True, type=pathlib.Path, help="where to write the train state")
    parser.add_argument("--format", choices=("auto", "flax2021", "pytorch"), default="auto")
    args, rest = parser.parse_known_args(argv)
    unknown = [arg for arg in rest if not arg.startswith("--config.")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")

    if not args.source.is_file():
        raise SystemExit(f"{args.source} does not exist or is not a file")
    try:
        config = load_config(args.config, rest)
        fmt = detect_format(args.source) if args.format == "auto" else args.format
        weights = read_pytorch(args.source) if fmt == "pytorch" else read_flax2021(args.source)
        path = save_converted(config, weights, args.workdir)
    except (ConfigError, ConversionError, FileNotFoundError, FileExistsError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise SystemExit(f"convert_checkpoint: {message}") from None
    print(f"wrote step {weights.step} ({fmt}, EMA weights for sampling) to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
