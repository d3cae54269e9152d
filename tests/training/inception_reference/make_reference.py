"""Writes reference.npz: pytorch-fid's own FID Inception outputs for the random weights and
images of random_weights.py. Not a test; run it where torch and pytorch-fid are installed:

    python -c "import json; from training.inception import state_dict_shapes as s; \
               json.dump(s(), open('/tmp/shapes.json', 'w'))"      # in this project's venv
    cd tests/training/inception_reference && python make_reference.py /tmp/shapes.json  # torch venv

shapes.json maps each state-dict key to its torch shape. reference.npz was made with torch 2.14.1
and pytorch-fid 0.3.0 (torchvision 0.29.1).
"""
import json
import pathlib
import sys
from unittest import mock

import numpy as np
import torch
from pytorch_fid import inception as fid_inception
from random_weights import random_state_dict, reference_images

HERE = pathlib.Path(__file__).parent


def main(shapes_file: str) -> None:
    shapes = {k: tuple(v) for k, v in json.loads(pathlib.Path(shapes_file).read_text()).items()}
    state = {k: torch.from_numpy(v) for k, v in random_state_dict(shapes).items()}
    # pytorch-fid fetches its weights by URL; hand it these instead (load_state_dict is strict).
    with mock.patch.object(fid_inception, "load_state_dict_from_url", lambda *a, **k: state):
        net = fid_inception.InceptionV3([3], resize_input=True, normalize_input=True).eval()
    out = {"torch_version": np.asarray(torch.__version__)}
    with torch.no_grad():
        for name, images in reference_images().items():
            pool3 = net(torch.from_numpy(images).permute(0, 3, 1, 2))[0][:, :, 0, 0]
            out[f"{name}_features"] = pool3.numpy()
            out[f"{name}_logits"] = (pool3 @ state["fc.weight"].T + state["fc.bias"]).numpy()
    np.savez(HERE / "reference.npz", **out)
    print({k: v.shape for k, v in out.items()})


if __name__ == "__main__":
    main(sys.argv[1])
