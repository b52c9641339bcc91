"""Shared helpers of the bench scripts: machine description, contention check, timing, JSON output.

Bench scripts are not tests: they measure, on the machine they run on, and write one JSON file each to
bench/results/. Every file carries the machine description (CPU model and the SIMD flags that decide bf16 speed,
cores, torch version, date) and the load average before and after, so a number measured on a busy machine is
labelled as such (`contended: true`) instead of passing for the machine's speed.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:  # run as `python bench/x.py` from a checkout
    sys.path.insert(0, str(ROOT))

from secvec_bench import hardware  # noqa: E402

# CPU flags that matter for CPU matmul speed in torch (oneDNN picks kernels from these).
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_info() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = hardware.cpu_flags()
    return {"model": model, "simd_flags": [f for f in SIMD_FLAGS if f in flags], "logical_cpus": os.cpu_count()}


bf16_supported = hardware.cpu_bf16_native  # one definition, shared with the CLI's --bf16 warning


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict[str, Any]:
    import torch

    from secvec_bench.hardware import keep_freed_memory
    from secvec_bench.models import set_threads

    set_threads()
    allocator = keep_freed_memory()  # as the CLI does, so the bench times what a run does
    return {
        "malloc_keeps_freed_memory": allocator,
        "cpu": cpu_info(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "mkldnn_bf16": bf16_supported(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
    }


class Contention:
    """Load average at start and end: the run counts as contended when other work used the cores meanwhile.

    The threshold is a quarter of a core above idle: on a quiet machine the 1-minute load average of a bench that
    keeps all cores busy approaches the core count, so the check looks at the load *before* the bench started and
    at the 1-minute load after minus the bench's own threads.
    """

    def __init__(self) -> None:
        self.before = load_average()

    def result(self, own_threads: int) -> dict[str, Any]:
        after = load_average()
        cores = os.cpu_count() or 1
        busy_before = bool(self.before) and self.before[0] > 0.25 * cores
        busy_after = bool(after) and after[0] - own_threads > 0.25 * cores
        return {"contended": busy_before or busy_after, "load_average_before": self.before,
                "load_average_after": after}


def timed(fn: Callable[[], Any], repeat: int = 1, warmup: int = 0) -> tuple[float, Any]:
    """Best-of-`repeat` wall time of fn() (the least disturbed run) and the last result."""
    out = None
    for _ in range(warmup):
        out = fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def write_result(name: str, payload: dict[str, Any], contention: Contention, own_threads: int,
                 out_dir: Path | None = None) -> Path:
    """Write bench/results/<name>.json atomically with the machine description and the contention label."""
    from secvec_bench.io import atomic_write_json

    out_dir = Path(out_dir) if out_dir else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "bench": name,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        **contention.result(own_threads),
        **payload,
    }
    path = out_dir / f"{name}.json"
    atomic_write_json(path, doc)
    print(json.dumps({k: doc[k] for k in ("bench", "date", "contended")}), f"-> {path}")
    return path


def resolve_smollm2(cache_dir: str | None = None):
    """The built-in SmolLM2 as a safetensors folder (converted once into the stage cache) and its GGUF file."""
    from secvec_bench.cache import default_cache_root
    from secvec_bench.models import DEFAULT_MODEL, _gguf_path, resolve

    root = Path(cache_dir) if cache_dir else default_cache_root()
    return resolve(DEFAULT_MODEL, root), _gguf_path(DEFAULT_MODEL)


def eval_prompts(n: int, data_dir: str | None = None) -> list[str]:
    """The pipeline's held-out harmful prompts (built-in data unless a data dir is given), first n."""
    from secvec_bench.suite import build_suite

    rows = build_suite(data_dir).harmful["eval"]
    if len(rows) < n:
        raise SystemExit(f"only {len(rows)} evaluation prompts available, asked for {n}")
    return [r["goal"] for r in rows[:n]]
