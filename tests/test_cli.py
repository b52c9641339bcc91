"""CLI errors: one line on stderr naming the problem, exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    e = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "secvec_bench", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=e, timeout=300)


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.parametrize(
    "args,needles",
    [
        (["run", "--defense", "bogus"], ["unknown defense", "bogus"]),
        (["run", "--scenario", "nope"], ["unknown scenario", "nope"]),
        (["run", "--seeds", "1,x"], ["--seeds", "integers"]),
        (["run", "--max-eval", "0"], ["--max-eval", "positive"]),
        (["run", "--max-train", "-3"], ["--max-train"]),
        (["run", "--judge", "oracle"], ["unknown judge", "oracle"]),
        (["run", "--model", "/no/such/model"], ["/no/such/model", "not found"]),
        (["run", "--data-dir", "/no/such/dir"], ["/no/such/dir"]),
        (["list", "things"], ["invalid choice"]),
    ],
)
def test_bad_input_exits_2_with_one_line(args, needles, tmp_path):
    one_line_error(cli(*args, "--out", str(tmp_path / "runs")) if args[0] == "run" else cli(*args), *needles)


def test_malformed_scenario_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\npool: [unclosed\n")
    one_line_error(cli("run", "--scenario", str(bad), "--out", str(tmp_path)), str(bad), "malformed YAML")


def test_model_folder_that_is_not_causal_lm(tmp_path):
    d = tmp_path / "enc"
    d.mkdir()
    (d / "config.json").write_text('{"architectures": ["BertForSequenceClassification"]}')
    one_line_error(cli("run", "--model", str(d), "--out", str(tmp_path / "r")), "not a causal LM")


def test_list_shows_registries():
    out = cli("list")
    assert out.returncode == 0
    for name in ("smollm2-135m", "explicit_harmful", "security_vectors", "none", "keyword"):
        assert name in out.stdout
