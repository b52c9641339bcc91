"""Two processes sharing one stage cache build a missing entry once: the second waits for the first's build."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

BUILDER = r"""
import sys, time
from pathlib import Path
from secvec_bench.cache import StageCache

root, log, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

def build(tmp):
    with open(log, "a") as f:
        f.write(name + " start\n")
    time.sleep(1.5)
    (tmp / "out.txt").write_text(name)
    with open(log, "a") as f:
        f.write(name + " end\n")
    return {}

cache = StageCache(root)
path = cache.build_dir("adapter", "k" * 32, "shared", build)
print((path / "out.txt").read_text(), cache.timings["adapter:shared"]["cached"])
"""


def test_concurrent_builds_of_one_entry_run_once(tmp_path):
    script = tmp_path / "builder.py"
    script.write_text(BUILDER)
    log = tmp_path / "log.txt"
    cmd = [sys.executable, str(script), str(tmp_path / "cache"), str(log)]
    first = subprocess.Popen(cmd + ["first"], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (log.exists() and "first start" in log.read_text()):  # the first holds the lock
        assert time.time() < deadline and first.poll() is None
        time.sleep(0.05)
    second = subprocess.run(cmd + ["second"], capture_output=True, text=True, timeout=120)
    out_first, _ = first.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert log.read_text().splitlines() == ["first start", "first end"]  # built once
    assert out_first.split() == ["first", "False"]
    assert second.stdout.split() == ["first", "True"]  # the second got the first's entry, as a cache hit
    assert "waiting for another process" in second.stderr
    manifest = json.loads((tmp_path / "cache" / "adapter" / ("k" * 32) / "MANIFEST.json").read_text())
    assert list(manifest["files"]) == ["out.txt"]
