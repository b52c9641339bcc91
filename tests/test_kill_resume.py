"""Crash safety with real processes: SIGKILL a run at several stages, rerun the same command, get the same results.

A reference run (own output dir, own cache) goes uninterrupted. The same command on a second output dir and cache is
killed with SIGKILL at successive points (mid-alignment, after the first generation is stored, when the first attack
folder appears), then rerun to completion. The resumed run must hold
every sample exactly once and `results.json` rows byte-identical (as JSON) to the reference. While one run holds the
run directory, a second identical command must fail fast with exit 2 and one line naming the directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SIZES = ["--max-train", "16", "--max-eval", "6", "--sv-samples", "8", "--max-new-tokens", "4",
         "--attack-epochs", "1", "--batch-size", "4", "--quiet"]
N_SAMPLES = 4 * 6  # phases aligned, attacked/none, attacked/security_vectors, sv_on x 6 eval prompts
TIMEOUT = 300


def _env(cache: Path) -> dict:
    """Built-in data (CI sets SECVEC_BENCH_DATA for the integration tests; these runs must not depend on it)."""
    env = {k: v for k, v in os.environ.items() if k != "SECVEC_BENCH_DATA"}
    return {**env, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "SECVEC_BENCH_CACHE": str(cache)}


def _cmd(model: Path, out: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "secvec_bench", "run", "--model", str(model), *SIZES,
            "--out", str(out), "--cache-dir", str(cache)]


def _start(cmd: list[str], cache: Path, log: Path) -> subprocess.Popen:
    fh = open(log, "ab")
    try:
        return subprocess.Popen(cmd, cwd=ROOT, env=_env(cache), stdout=fh, stderr=subprocess.STDOUT)
    finally:
        fh.close()


def _entries(folder: Path) -> set[str]:
    return set(os.listdir(folder)) if folder.is_dir() else set()


def _wait_for_new(proc: subprocess.Popen, folder: Path, log: Path, pred=lambda name: True) -> str:
    """Poll until an entry that was not there when `proc` started appears in `folder`; returns its name."""
    before = _entries(folder)
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        new = sorted(n for n in _entries(folder) - before if pred(n))
        if new:
            return new[0]
        if proc.poll() is not None:
            raise AssertionError(f"run ended (rc {proc.returncode}) before anything new appeared in {folder}:\n"
                                 + log.read_text(errors="replace")[-2000:])
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"timed out waiting for {folder}")


def _sigkill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _run_dir(out: Path) -> Path:
    dirs = [d for d in out.iterdir() if d.is_dir()] if out.is_dir() else []
    assert len(dirs) == 1, dirs
    return dirs[0]


def _assert_nothing_torn(out: Path, cache: Path) -> None:
    """After a kill: no results file yet (the run never finished), and every stored cache value is whole JSON."""
    for d in (out.iterdir() if out.is_dir() else []):
        assert not (d / "results.json").exists() and not (d / "samples.jsonl").exists(), list(d.iterdir())
    for stage in ("generate", "judge"):
        for f in (cache / stage).glob("*.json") if (cache / stage).is_dir() else []:
            if not f.name.startswith("."):
                json.loads(f.read_text())  # atomic writes: never a torn file under the final name
    from secvec_bench.cache import StageCache

    sc = StageCache(cache)
    for stage in ("align", "adapter", "attack"):
        for d in (cache / stage).iterdir() if (cache / stage).is_dir() else []:
            if not d.name.startswith("."):  # a folder under its final name is complete: manifest and hashes match
                assert sc.valid_dir(stage, d.name) is not None, d


def _samples(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def test_sigkill_at_each_stage_then_resume_matches_uninterrupted_run(tiny_dir, tmp_path):
    ref_out, ref_cache = tmp_path / "ref_out", tmp_path / "ref_cache"
    out, cache = tmp_path / "out", tmp_path / "cache"
    log = tmp_path / "resumed.log"

    # The reference run goes in parallel with the interrupted chain: it shares nothing with it.
    ref = _start(_cmd(tiny_dir, ref_out, ref_cache), ref_cache.parent, tmp_path / "ref.log")
    cmd = _cmd(tiny_dir, out, cache)
    kills = []
    try:
        # 1. mid-alignment: the temporary build folder of the align stage exists, its final folder does not yet
        p = _start(cmd, cache, log)
        kills.append(("align", _wait_for_new(p, cache / "align", log)))
        _sigkill(p)
        _assert_nothing_torn(out, cache)

        # 2. the first generation (the aligned model's responses) has just been stored
        p = _start(cmd, cache, log)
        kills.append(("generate", _wait_for_new(p, cache / "generate", log, lambda n: not n.startswith("."))))
        _sigkill(p)
        _assert_nothing_torn(out, cache)

        # 3. the first attack folder appears (usually the temporary one, while the attack is training).
        #    Before killing, freeze the run and check that a second identical command is refused by the lock.
        p = _start(cmd, cache, log)
        kills.append(("attack", _wait_for_new(p, cache / "attack", log)))
        p.send_signal(signal.SIGSTOP)
        try:
            second = subprocess.run(cmd, cwd=ROOT, env=_env(cache), capture_output=True, text=True, timeout=TIMEOUT)
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)
        lines = [l for l in second.stderr.splitlines() if l.strip()]
        assert second.returncode == 2, second.stderr
        assert len(lines) == 1 and "in use by another" in lines[0] and str(out) in lines[0], second.stderr
        assert "Traceback" not in second.stderr
        _assert_nothing_torn(out, cache)

        # 4. the same command again, to completion
        final = subprocess.run(cmd, cwd=ROOT, env=_env(cache), capture_output=True, text=True, timeout=TIMEOUT)
        assert final.returncode == 0, final.stderr[-3000:]
        assert ref.wait(timeout=TIMEOUT) == 0, (tmp_path / "ref.log").read_text()[-3000:]
    finally:
        for proc in (ref,):
            if proc.poll() is None:
                proc.kill()

    got_dir, ref_dir = _run_dir(out), _run_dir(ref_out)
    assert got_dir.name == ref_dir.name  # the run id depends on the config only
    got, want = json.loads((got_dir / "results.json").read_text()), json.loads((ref_dir / "results.json").read_text())
    assert json.dumps(got["rows"], sort_keys=True) == json.dumps(want["rows"], sort_keys=True)
    assert got["rows"], "no result rows"

    samples, ref_samples = _samples(got_dir), _samples(ref_dir)
    ids = [s["id"] for s in samples]
    assert len(ids) == N_SAMPLES and len(set(ids)) == N_SAMPLES, sorted(ids)
    assert ids == [s["id"] for s in ref_samples]
    assert samples == ref_samples  # same responses and verdicts, sample by sample

    # it really resumed: the killed runs' finished stages were reused, not recomputed
    stages = got["provenance"]["timings"]["stages"]
    assert stages["align:align"]["cached"] is True and stages["generate:aligned"]["cached"] is True, stages
    assert [k for k, _ in kills] == ["align", "generate", "attack"]


def test_lock_file_is_released_after_a_kill(tmp_path):
    """flock dies with its process: a SIGKILLed run never leaves a stale lock that blocks the rerun."""
    run_dir = tmp_path / "runs" / "r"
    code = ("import sys, time; from pathlib import Path; from secvec_bench.pipeline import RunLock\n"
            "l = RunLock(Path(sys.argv[1])); l.__enter__(); print('locked', flush=True); time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        from secvec_bench.errors import UserError
        from secvec_bench.pipeline import RunLock

        with pytest.raises(UserError, match="in use by another"):
            with RunLock(run_dir):
                pass
        _sigkill(p)
        with RunLock(run_dir):  # taken at once after the holder died
            assert (run_dir / ".lock").exists()
    finally:
        if p.poll() is None:
            p.kill()


WRITER = """
import sys
from pathlib import Path
from secvec_bench.results import write_run
run_dir, i = Path(sys.argv[1]), int(sys.argv[2])  # versions increase across processes
print("writing", flush=True)
while True:
    i += 1
    n = 2000 + (i % 2) * 1000  # alternate sizes so old and new versions differ
    samples = [{"id": f"s{k}", "version": i, "response": "x" * 200} for k in range(n)]
    write_run(run_dir, samples, {"run_id": "r", "rows": [{"version": i, "n": n}], "provenance": {}})
"""


def test_sigkill_during_result_writes_never_leaves_a_torn_file(tmp_path):
    """A process rewriting samples.jsonl and results.json in a loop, SIGKILLed at random instants: every time, both
    files parse completely, and results.json describes a whole version (its n matches a complete sample list)."""
    import random

    from secvec_bench.results import write_run

    run_dir = tmp_path / "run"
    write_run(run_dir, [{"id": "s0", "version": 0}], {"run_id": "r", "rows": [{"version": 0, "n": 1}]})
    rng = random.Random(0)
    for attempt in range(1, 9):
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(run_dir), str(attempt * 10**6)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "writing"
        time.sleep(rng.uniform(0.05, 0.6))
        _sigkill(p)
        results = json.loads((run_dir / "results.json").read_text())
        samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
        (row,) = results["rows"]
        assert {len(samples)} <= {1, 2000, 3000} and row["n"] in (1, 2000, 3000)
        assert len({s["version"] for s in samples}) == 1  # never a mix of two writes
        # samples are written before results: the samples on disk are the results' version or a newer one
        assert samples[0]["version"] >= row["version"]


def test_ctrl_c_mid_stage_exits_130_and_cleans_its_temp_folder(tiny_dir, tmp_path):
    out, cache, log = tmp_path / "out", tmp_path / "cache", tmp_path / "int.log"
    p = _start(_cmd(tiny_dir, out, cache), cache, log)
    try:
        _wait_for_new(p, cache / "align", log)
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=TIMEOUT) == 130, log.read_text()[-2000:]
    finally:
        if p.poll() is None:
            p.kill()
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "interrupted" in text.splitlines()[-1], text[-2000:]
    # the interrupted stage's temporary folder is removed; anything under a final name is complete
    leftovers = [n for n in _entries(cache / "align") if n.startswith(".")]
    assert not leftovers, leftovers
    _assert_nothing_torn(out, cache)
