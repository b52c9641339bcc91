"""What this CPU can do fast, asked once so the CLI can warn before a slow run.

Why: bf16 is only fast where oneDNN has native kernels (avx512_bf16 or AMX). On other CPUs torch emulates it, and on
the 2-core AVX2 EPYC of 2026-12-03 a bf16 matmul ran at 0.3 GFLOP/s against 153 in fp32, so `--bf16` there turns a
10-minute run into days. The CLI warns; it does not refuse, since the user may know better (a GPU, a newer torch).
"""

from __future__ import annotations

from pathlib import Path

BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags() -> set[str]:
    """The flags line of /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_bf16_native() -> bool:
    """True when oneDNN runs bf16 natively on this CPU; else bf16 is emulated and slow."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # a torch without the private op: fall back to the CPU flags
        return bool(BF16_FLAGS & cpu_flags())
