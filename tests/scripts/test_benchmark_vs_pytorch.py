"""The side-by-side benchmark's plumbing (the timing itself is a script, never a test): the worker
protocol runs the steps it is asked for and reports both clocks, and the peer is skipped with a
reason where it cannot run."""
import importlib.util
import io
import json

import pytest

from scripts.benchmark_vs_pytorch import peer_missing
from scripts.pytorch_reference_worker import serve


def test_worker_runs_the_asked_steps_and_reports_wall_and_cpu_time(monkeypatch, capsys):
    steps = []
    monkeypatch.setattr("sys.stdin", io.StringIO("2\n3\n"))
    serve(lambda: steps.append(1))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == {"ready": True} and len(steps) == 1 + 2 + 3
    assert [sorted(line) for line in lines[1:]] == [["cpu_seconds", "seconds"]] * 2
    assert all(line["seconds"] >= 0 and line["cpu_seconds"] >= 0 for line in lines[1:])


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_peer_is_skipped_with_the_reason(tmp_path):
    assert "not given" in peer_missing(None)
    assert "no losses.py" in peer_missing(str(tmp_path))
    (tmp_path / "losses.py").write_text("")
    assert peer_missing(str(tmp_path)) is None
