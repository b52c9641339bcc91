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


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)
_allocator_tuned = False


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to serve every block from its heap and not hand freed memory back to the kernel.

    Why: torch's CPU tensors come straight from malloc, and glibc gives blocks above its mmap threshold their own
    fresh mapping, returned on free. Every training step allocates and frees the same large activations and
    logits, so every step faults all of their pages in again: about 50,000 minor page faults per bf16 LoRA step on
    SmolLM2 (8 x 128 tokens) on the 2-core AMX Xeon of 2026-12-05, and none with this setting; the step's soft-max
    and dtype copies over the 49k-word logits ran about twice as fast. The cost: the process keeps its peak heap
    until it exits, which a benchmark run does anyway. Returns whether the setting was applied (glibc only; on
    other C libraries it is a no-op). Idempotent.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return True
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    except (OSError, AttributeError):
        return False
    _allocator_tuned = ok
    return ok
