"""Multi-GPU training under `accelerate launch`: the accelerate config a TrainConfig needs, built and checked here.

Data parallelism is done by `secvec_bench.training.train(accelerator=...)` itself (row sharding + a sum all-reduce
of the trainable gradients; see its docstring), so the config only has to start N processes on one machine. bf16
is TrainConfig.bf16 (`--bf16`), applied by our own autocast: accelerate's `mixed_precision` stays "no" so that
there is one switch, and the per-step math is the same on 1 GPU, N GPUs and the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError


@dataclass(frozen=True)
class AcceleratePlan:
    num_processes: int
    global_batch: int  # examples per optimiser step, identical to the single-process run
    max_rows_per_process: int
    bf16: bool

    def config(self) -> dict[str, Any]:
        """The accelerate YAML config (what `accelerate config` would write) for one machine with N GPUs."""
        return {
            "compute_environment": "LOCAL_MACHINE",
            "distributed_type": "MULTI_GPU" if self.num_processes > 1 else "NO",
            "num_machines": 1,
            "machine_rank": 0,
            "num_processes": self.num_processes,
            "gpu_ids": "all",
            "mixed_precision": "no",  # bf16 comes from TrainConfig.bf16 (our autocast), see module docstring
            "downcast_bf16": "no",
            "rdzv_backend": "static",
            "same_network": True,
            "main_training_function": "main",
            "use_cpu": False,
        }


def plan_training(cfg: Any, num_gpus: int) -> AcceleratePlan:
    """Check that `cfg` (a TrainConfig) splits over `num_gpus` processes and describe the split."""
    if num_gpus < 1:
        raise UserError(f"--num-gpus must be at least 1, not {num_gpus}")
    if num_gpus > cfg.batch_size:
        raise UserError(f"--num-gpus {num_gpus} exceeds the batch size {cfg.batch_size}: some GPUs would get no rows; "
                        "raise the batch size or use fewer GPUs")
    return AcceleratePlan(num_processes=num_gpus, global_batch=cfg.batch_size,
                          max_rows_per_process=-(-cfg.batch_size // num_gpus), bf16=cfg.bf16)


def write_config(plan: AcceleratePlan, path: Path) -> Path:
    import yaml

    from ..io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(plan.config(), sort_keys=False))
    return path
