"""Attack fine-tuning across GPUs: `accelerate launch -m secvec_bench.backends.accelerate_train ...`.

Trains the same LoRA attack the pipeline trains (scenario data, TrainConfig defaults of the pipeline) on a model
folder, data-parallel over the launched processes through `training.train(accelerator=...)`, and saves the adapter
from process 0 only. The saved adapter is a plain PEFT folder: serve it with `--backend vllm` (native LoRA) or merge
it. Runs on CPU too (`accelerate launch --cpu --num_processes 2 ...`, gloo), which is how it is smoke-tested here.

    accelerate launch --config_file docs/accelerate_multi_gpu.yaml -m secvec_bench.backends.accelerate_train \\
        --model /path/to/aligned --scenario explicit_harmful --out adapters/attack --bf16
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="folder with config.json + safetensors (e.g. the aligned model)")
    ap.add_argument("--scenario", default="explicit_harmful")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--out", required=True, help="adapter output folder")
    args = ap.parse_args(argv)

    import torch
    from accelerate import Accelerator
    from peft import get_peft_model

    from ..models import load_model, load_tokenizer
    from ..pipeline import ATTACK_DEFAULTS
    from ..scenarios import load_scenario
    from ..suite import build_suite
    from ..training import lora_config, train
    from .accelerate_plan import plan_training

    acc = Accelerator()
    cfg = replace(ATTACK_DEFAULTS, seed=args.seed, bf16=args.bf16,
                  epochs=args.epochs if args.epochs else ATTACK_DEFAULTS.epochs)
    plan = plan_training(cfg, acc.num_processes)
    examples = load_scenario(args.scenario).build(build_suite(args.data_dir), seed=args.seed, max_n=args.max_train)
    tok = load_tokenizer(Path(args.model))
    torch.manual_seed(cfg.seed)  # same LoRA init on every process (and as a single-process run)
    model = get_peft_model(load_model(Path(args.model)), lora_config(cfg)).to(acc.device)
    stats = train(model, tok, [e.messages for e in examples], cfg, desc=f"attack[{acc.process_index}]",
                  accelerator=acc)
    acc.wait_for_everyone()
    if acc.is_main_process:
        out = Path(args.out)
        model.save_pretrained(out)
        (out / "train_stats.json").write_text(json.dumps({"plan": plan.config(), "processes": acc.num_processes,
                                                          "train": stats.as_dict()}, indent=2))
        print(json.dumps({"adapter": str(out), "steps": stats.steps, "last_loss": stats.losses[-1]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
