"""Every bad invocation of every mode ends the same way: exit status 2 (usage) or 1 (run state),
one line on stderr naming the culprit, no traceback, and the workdir exactly as it was (or
still absent). In-process calls of `scripts.main.main`; all of them fail before any model is
built. Also: `score-sde --help` lists the modes, `score-sde MODE --help` only that mode's flags,
and `--traceback` / SCORE_SDE_DEBUG=1 show the traceback."""
import contextlib
import dataclasses
import hashlib
import io
import pathlib

import numpy as np
import pytest
from PIL import Image

from scripts import main as cli
from scripts.modes import MODES

REPO = pathlib.Path(__file__).resolve().parents[2]
DIGITS = f"--config={REPO / 'configs' / 'digits.py'}"


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        with pytest.raises(SystemExit) as exited:
            cli.main(["score-sde", *args])
    return exited.value.code, out.getvalue(), err.getvalue()


def tree_hash(path: pathlib.Path) -> str | None:
    """Names, kinds and contents of everything under `path` (None when it does not exist)."""
    if not path.exists():
        return None
    digest = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        digest.update(str(p.relative_to(path)).encode())
        digest.update(p.read_bytes() if p.is_file() else b"<dir>")
    return digest.hexdigest()


def _png(path: pathlib.Path, size: int = 8) -> None:
    Image.fromarray(np.full((size, size), 128, np.uint8), "L").save(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """A workdir that looks trained (a saved step; never read here, every case fails before),
    and a zoo of bad inputs and config files."""
    root = tmp_path_factory.mktemp("bad")
    work = root / "work"
    (work / "checkpoints-meta" / "2").mkdir(parents=True)
    (work / "config.json").write_text("{}")
    good = np.zeros((2, 8, 8, 1), np.float32)
    arrays = {
        "nan": good.copy(), "inf": good.copy(), "big": np.zeros((2, 16, 16, 1), np.float32),
        "rank3": np.zeros((8, 8, 1), np.float32), "empty": np.zeros((0, 8, 8, 1), np.float32),
        "text": np.array(["a", "b"]), "odd": np.zeros((3, 8, 8, 1), np.float32), "good": good,
        "points": np.zeros((4, 2), np.float32), "complex": np.zeros((2, 8, 8, 1), np.complex64),
    }
    arrays["nan"][1, 3, 3, 0] = np.nan
    arrays["inf"][0, 0, 0, 0] = np.inf
    for name, array in arrays.items():
        np.savez(root / f"{name}.npz", images=array)
    np.savez(root / "two.npz", a=good, b=good)
    np.savez(root / "object.npz", images=np.array([good, None], dtype=object))
    np.savez(root / "labels3.npz", labels=np.zeros(3))
    (root / "garbage.npz").write_bytes(b"not a zip at all")
    (root / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    _png(root / "whole.png")
    (root / "truncated.png").write_bytes((root / "whole.png").read_bytes()[:30])
    (root / "mixed").mkdir()
    _png(root / "mixed" / "a.png", 8)
    _png(root / "mixed" / "b.PNG", 16)
    (root / "nopngs").mkdir()
    (root / "nopngs" / "note.txt").write_text("no images here")
    (root / "a_file").write_text("a file, not a folder")
    configs = {
        "syntax.py": "def get_config(:\n",
        "raises.py": "def get_config():\n    raise RuntimeError('broken on purpose')\n",
        "noget.py": "X = 1\n",
        "none.py": "def get_config():\n    return None\n",
        "config.txt": "not python\n",
    }
    for name, text in configs.items():
        (root / name).write_text(text)
    return {"root": str(root), "W": str(work), "E": str(root / "absent"), "F": str(root / "a_file")}


# (mode and flags with {W} workdir / {E} absent workdir / {R} files folder, expected status, culprit text)
CASES = [
    # --- command line ---
    ("", 2, "usage: score-sde MODE"),
    ("--workdir={W}", 2, "no mode given"),
    ("tran --workdir={W}", 2, "did you mean 'train'"),
    ("sample {DIGITS}", 2, "needs --workdir"),
    ("sample --workdir={W}", 2, "needs --config"),
    ("train_guidance_classifier --workdir={E}", 2, "needs --config"),
    ("train_guidance_classifier {DIGITS} --workdir={E} --input={R}/good.npz", 2,
     "--input is not a flag of mode 'train_guidance_classifier'"),
    ("sample {DIGITS} --workdir={W} stray", 2, "unexpected arguments ['stray']"),
    ("sample {DIGITS} --workdir={W} --bogus=1", 2, "Unknown command line flag 'bogus'"),
    ("sample {DIGITS} --workdir={W} --input={R}/good.npz", 2, "--input is not a flag of mode 'sample'"),
    ("train {DIGITS} --workdir={E} --input={R}/good.npz", 2, "--input is not a flag of mode 'train'"),
    ("likelihood {DIGITS} --workdir={W} --num_samples=4", 2, "--num_samples is not a flag of mode 'likelihood'"),
    ("evaluate {DIGITS} --workdir={W} --max_steps=3", 2, "--max_steps is not a flag of mode 'evaluate'"),
    ("denoise {DIGITS} --workdir={W} --input={R}/good.npz --strength=0.3", 2, "--strength is not a flag"),
    ("encode {DIGITS} --workdir={W} --input={R}/good.npz --app_seed=3", 2, "--app_seed is not a flag"),
    ("decode {DIGITS} --workdir={W} --input={R}/good.npz --interp_num=3", 2, "--interp_num is not a flag"),
    ("demo --workdir={E} --input={R}/good.npz", 2, "--input is not a flag of mode 'demo'"),
    ("train_classifier --workdir={E} --split=test", 2, "--split is not a flag of mode 'train_classifier'"),
    ("sample {DIGITS} --workdir={F}", 2, "is a file, not a folder"),
    ("sample {DIGITS} --config={DIGITS} --workdir={W}", 2, "--config is given twice"),
    ("sample --config.training.batch_size=8 --workdir={W}", 2, "no --config=FILE is given"),
    # --- flag values ---
    ("sample {DIGITS} --workdir={W} --num_samples=0", 2, "--num_samples=0"),
    ("sample {DIGITS} --workdir={W} --num_samples=-5", 2, "--num_samples=-5"),
    ("sample {DIGITS} --workdir={W} --num_samples=many", 2, "num_samples"),
    ("train {DIGITS} --workdir={E} --max_steps=0", 2, "--max_steps=0"),
    ("train {DIGITS} --workdir={E} --time_budget_s=-1", 2, "--time_budget_s=-1"),
    ("likelihood {DIGITS} --workdir={W} --max_examples=0", 2, "--max_examples=0"),
    ("evaluate {DIGITS} --workdir={W} --feature_extractor=vgg", 2, "feature_extractor"),
    ("demo --workdir={E} --demo_train_minutes=-2", 2, "--demo_train_minutes=-2"),
    ("edit {DIGITS} --workdir={W} --input={R}/good.npz --strength=1.5", 2, "--strength=1.5"),
    ("edit {DIGITS} --workdir={W} --input={R}/good.npz --strength=-0.1", 2, "--strength=-0.1"),
    ("denoise {DIGITS} --workdir={W} --input={R}/good.npz --noise_sigma=0", 2, "noise_sigma"),
    ("denoise {DIGITS} --workdir={W} --input={R}/good.npz --noise_sigma=-1", 2, "noise_sigma"),
    ("denoise {DIGITS} --workdir={W} --input={R}/good.npz --add_noise=nan", 2, "add_noise"),
    ("denoise {DIGITS} --workdir={W} --input={R}/good.npz --noise_sigma=1e6", 2, "--noise_sigma=1000000.0"),
    ("denoise {DIGITS} --workdir={W} --input={R}/good.npz --posterior_samples=-1", 2, "--posterior_samples=-1"),
    ("denoise {DIGITS} --workdir={W} --input={R}/good.npz --app_sampler=magic", 2, "--app_sampler='magic'"),
    ("interpolate {DIGITS} --workdir={W} --input={R}/good.npz --interp_num=1", 2, "--interp_num=1"),
    ("anomaly {DIGITS} --workdir={W} --input={R}/good.npz --anomaly_draws=0", 2, "--anomaly_draws=0"),
    ("anomaly {DIGITS} --workdir={W} --input={R}/good.npz --anomaly_times=0,2", 2, "anomaly_times"),
    ("anomaly {DIGITS} --workdir={W} --input={R}/good.npz --anomaly_times=abc", 2, "anomaly_times"),
    ("anomaly {DIGITS} --workdir={W} --input={R}/good.npz --anomaly_score=loss", 2, "anomaly_score"),
    # --- config files and values ---
    ("sample --config={R}/missing.py --workdir={W}", 2, "missing.py"),
    ("sample --config={R}/syntax.py --workdir={W}", 2, "syntax.py' failed to load: line 1: SyntaxError"),
    ("train --config={R}/raises.py --workdir={E}", 2, "raises.py' failed to load: line 2: RuntimeError"),
    ("sample --config={R}/noget.py --workdir={W}", 2, "defines no get_config()"),
    ("sample --config={R}/none.py --workdir={W}", 2, "get_config() returned NoneType"),
    ("sample --config={R}/config.txt --workdir={W}", 2, "must be a Python file"),
    ("train {DIGITS} --workdir={E} --config.training.batchsize=8", 2, "training.batchsize"),
    ("train {DIGITS} --workdir={E} --config.training.batch_size=eight", 2, "training.batch_size"),
    ("train {DIGITS} --workdir={E} --config.training.batch_size=-4", 2, "training.batch_size"),
    ("train {DIGITS} --workdir={E} --config.training.n_iters=0", 2, "training.n_iters"),
    ("train {DIGITS} --workdir={E} --config.optim.lr=1e999", 2, "optim.lr"),
    ("train {DIGITS} --workdir={E} --config.optim.lr=nan", 2, "optim.lr"),
    ("sample {DIGITS} --workdir={W} --config.sampling.method=magic", 2, "sampling.method"),
    ("sample {DIGITS} --workdir={W} --seeds=9-3", 2, "seed range '9-3' ends before it starts"),
    ("sample {DIGITS} --workdir={W} --seeds=0-x", 2, "bad seed '0-x'"),
    ("sample {DIGITS} --workdir={W} --seeds=0-9 --num_samples=4", 2, "--seeds and --num_samples"),
    ("sample {DIGITS} --workdir={W} --seeds=0-9 --labels=3", 2, "labels need a class-conditional model"),
    ("sample {DIGITS} --workdir={W} --config.sampling.predictor=magic", 2, "sampling.predictor"),
    ("sample {DIGITS} --workdir={W} --config.sampling.eps=2.0", 2, "sampling.eps"),
    ("sample {DIGITS} --workdir={W} --config.sampling.batch_size=0", 2, "sampling.batch_size"),
    ("train {DIGITS} --workdir={E} --config.model.sigma_min=100.0", 2, "model.sigma_min"),
    ("train {DIGITS} --workdir={E} --config.data.image_size=9", 2, "data.image_size"),
    ("train {DIGITS} --workdir={E} --config.training.eps=0", 2, "training.eps"),
    ("evaluate {DIGITS} --workdir={W} --config.eval.num_samples=0", 2, "eval.num_samples"),
    ("train {DIGITS} --workdir={E} --config.model.name=mlp --config.training.batch_size=5000", 2,
     "batch_size 5000 exceeds the 1497 examples"),
    ("train {DIGITS} --workdir={E} --config.training.log_freq=3 --config.training.n_jitted_steps=2", 2,
     "training.log_freq=3"),
    ("train_classifier --config={R}/none.py --workdir={E}", 2, "get_config() returned NoneType"),
    # --- run state ---
    ("sample {DIGITS} --workdir={E}", 1, "no checkpoint in"),
    ("likelihood {DIGITS} --workdir={E}", 1, "no checkpoint in"),
    ("evaluate {DIGITS} --workdir={E}", 1, "no checkpoint in"),
    ("encode {DIGITS} --workdir={E} --input={R}/good.npz", 1, "no checkpoint in"),
    ("likelihood {DIGITS} --workdir={W} --split=tset", 2, "--split='tset' cannot be read"),
    ("evaluate {DIGITS} --workdir={W} --config.eval.fid_dataset=tset", 2, "eval.fid_dataset='tset'"),
    ("evaluate {DIGITS} --workdir={W} --feature_extractor=inception", 2, "needs --inception_weights"),
    ("evaluate {DIGITS} --workdir={W} --feature_extractor=inception --inception_weights={R}/missing.npz", 2,
     "missing.npz"),
    # --- input files ---
    ("denoise {DIGITS} --workdir={W}", 2, "needs --input"),
    ("denoise {DIGITS} --workdir={W} --input={R}/missing.npz", 2, "missing.npz does not exist"),
    ("denoise {DIGITS} --workdir={W} --input={R}/nan.npz", 2, "nan.npz: example 1 holds NaN or infinite"),
    ("anomaly {DIGITS} --workdir={W} --input={R}/inf.npz", 2, "inf.npz: example 0 holds NaN or infinite"),
    ("edit {DIGITS} --workdir={W} --input={R}/object.npz", 2, "object.npz is not a readable .npz"),
    ("encode {DIGITS} --workdir={W} --input={R}/two.npz", 2, "two.npz holds arrays ['a', 'b']"),
    ("encode {DIGITS} --workdir={W} --input={R}/rank3.npz", 2, "rank3.npz holds an array of shape (8, 8, 1)"),
    ("decode {DIGITS} --workdir={W} --input={R}/big.npz", 2, "big.npz holds an array of shape (2, 16, 16, 1)"),
    ("decode {DIGITS} --workdir={W} --input={R}/points.npz", 2, "points.npz holds an array of shape (4, 2)"),
    ("denoise {DIGITS} --workdir={W} --input={R}/empty.npz", 2, "empty.npz: expected a non-empty numeric"),
    ("denoise {DIGITS} --workdir={W} --input={R}/text.npz", 2, "text.npz: expected a non-empty numeric"),
    ("denoise {DIGITS} --workdir={W} --input={R}/complex.npz", 2, "complex.npz: expected a non-empty numeric"),
    ("denoise {DIGITS} --workdir={W} --input={R}/garbage.npz", 2, "garbage.npz is not a readable .npz"),
    ("edit {DIGITS} --workdir={W} --input={R}/garbage.png", 2, "garbage.png cannot be read"),
    ("edit {DIGITS} --workdir={W} --input={R}/truncated.png", 2, "truncated.png cannot be read"),
    ("edit {DIGITS} --workdir={W} --input={R}/mixed", 2, "b.PNG is (16, 16)"),
    ("edit {DIGITS} --workdir={W} --input={R}/nopngs", 2, "nopngs holds no PNG files"),
    ("edit {DIGITS} --workdir={W} --input={R}/good.npz --mask={R}/big.npz", 2, "mask"),
    ("edit {DIGITS} --workdir={W} --input={R}/good.npz --mask={R}/missing.png", 2, "missing.png does not exist"),
    ("interpolate {DIGITS} --workdir={W} --input={R}/odd.npz", 2, "even number of inputs"),
    ("anomaly {DIGITS} --workdir={W} --input={R}/good.npz --labels={R}/labels3.npz", 2, "labels3.npz: labels"),
    ("anomaly {DIGITS} --workdir={W} --input={R}/good.npz --labels={R}/missing.npz", 2, "missing.npz"),
    # --- output paths ---
    ("denoise {DIGITS} --workdir={W} --input={R}/good.npz --output_dir={F}", 2, "a_file is a file"),
    ("encode {DIGITS} --workdir={W} --input={R}/good.npz --output_dir={F}/sub", 2, "a_file is a file"),
]


def test_the_table_covers_every_mode():
    covered = {case[0].split()[0] for case in CASES if case[0]}
    assert set(MODES) <= covered and len(CASES) >= 60


@pytest.mark.parametrize("command, status, culprit", CASES, ids=[c[0].split(" --")[0] or "-" for c in CASES])
def test_a_bad_invocation_fails_with_one_line_naming_the_culprit_and_changes_nothing(files, command, status,
                                                                                        culprit):
    args = command.format(DIGITS=DIGITS, R=files["root"], W=files["W"], E=files["E"], F=files["F"]).split()
    workdir = pathlib.Path(files["E"] if "{E}" in command else files["W"])
    before = tree_hash(workdir)
    code, out, err = run_cli(*args)
    lines = err.strip().splitlines()
    if not command:  # no arguments: the overview, and a failing status
        assert code == status and culprit in out
        return
    assert code == status, err
    assert len(lines) == 1 and lines[0].startswith("score-sde"), err
    assert culprit in lines[0], lines[0]
    assert "Traceback" not in err and "internal error" not in err
    assert tree_hash(workdir) == before


def test_help_lists_the_modes_and_each_mode_only_its_flags():
    code, out, _ = run_cli("--help")
    assert code == 0
    for name, spec in MODES.items():
        assert f"  {name}" in out and spec.summary in out
    for name, spec in MODES.items():
        code, out, _ = run_cli(name, "--help")
        assert code == 0 and out.startswith(f"usage: score-sde {name} ")
        listed = {line.split()[0].split("=")[0] for line in out.splitlines() if line.startswith("  --")}
        expected = {"--config", "--config.SECTION.KEY", "--workdir", "--traceback"} | {f"--{f}" for f in spec.flags}
        assert listed == expected, name
        for flag in spec.flags:  # with its help text
            assert cli.FLAGS[flag].help.split()[0] in out


def test_every_mode_flag_belongs_to_a_mode():
    """A flag defined by a mode module but listed by no mode could never be given."""
    listed = set(cli.COMMON_FLAGS) | {f for spec in MODES.values() for f in spec.flags}
    mode_modules = {spec.run.__module__ for spec in MODES.values()} | {cli.__name__}
    defined = {flag.name for module, flag_list in cli.FLAGS.flags_by_module_dict().items()
               if module in mode_modules for flag in flag_list}
    assert defined <= listed, defined - listed


def test_traceback_flag_and_debug_variable_show_the_traceback(files, monkeypatch):
    args = ["sample", DIGITS, f"--workdir={files['E']}"]
    with pytest.raises(Exception, match="no checkpoint in"):
        cli.main(["score-sde", *args, "--traceback"])
    monkeypatch.setenv("SCORE_SDE_DEBUG", "1")
    with pytest.raises(Exception, match="no checkpoint in"):
        cli.main(["score-sde", *args])


def test_an_unexpected_error_is_reported_as_a_bug_in_one_line(files, monkeypatch):
    def broken(config, workdir):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setitem(MODES, "sample", dataclasses.replace(MODES["sample"], run=broken))
    code, _, err = run_cli("sample", DIGITS, f"--workdir={files['W']}")
    assert code == 1 and err.strip() == (
        "score-sde sample: internal error ZeroDivisionError: division by zero (a bug: rerun with "
        "SCORE_SDE_DEBUG=1 or --traceback and report the traceback)")
