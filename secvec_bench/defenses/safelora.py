"""SafeLoRA (Hsu et al., "Safe LoRA: the Silver Lining of Reducing Safety Risks when Fine-tuning Large Language
Models", NeurIPS 2024, arXiv 2405.16833).

Stage: post-fine-tuning. The attack LoRA is trained as the user asks (no change to training, so it shares the
undefended attack's cache entry); afterwards each LoRA layer's update is compared with the "alignment matrix" of that
layer and, where the update points away from it, projected onto it. Threat model: a provider fine-tunes user data
with LoRA and may post-process the adapter before serving; it needs the weights before and after alignment. It does
not protect against an attacker who keeps their own adapter.

Recipe, as in the paper (section 3) and its reference code:
- alignment matrix per target module i: V_i = W_aligned,i - W_unaligned,i and C_i = V_i V_i^T / ||V_i||_F
  (d_out x d_out). Here "unaligned" is the model before this benchmark's alignment stage and "aligned" is the model
  after it, exactly the pair the paper uses (base and chat model);
- for the attack update dW_i = B_i A_i (scaling alpha/r applies equally to both sides), the similarity
  s_i = cos(vec(C_i B_i A_i), vec(B_i A_i));
- layers with s_i <= tau get B_i <- C_i B_i (the paper's code projects the B factor); the others are kept.
  `select="number"` projects the K layers with the lowest similarity instead of a threshold (the paper's other mode).
Defaults: tau = 0.35 (the value used in the public code's threshold mode). The per-layer similarities and how many
layers were projected are recorded in the run's provenance, so a reader can see whether the defense did anything.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

from ..errors import UserError
from .base import DEFENSES, POST_TRAIN_REPORT, DefenseContext, Prepared

DEFAULT_THRESHOLD = 0.35


def alignment_matrices(base_sd: dict, aligned_sd: dict, modules: Sequence[str]) -> dict[str, Any]:
    """C = V V^T / ||V||_F for every 2-D weight `<module>.weight` whose delta is non-zero."""
    import torch

    out = {}
    for name in modules:
        key = f"{name}.weight"
        v = (aligned_sd[key].float() - base_sd[key].float())
        norm = float(v.norm())
        if norm > 0:
            out[name] = (v @ v.T) / norm
    return out


def _module_of(param_name: str) -> str:
    """PEFT adapter tensor name -> module name in the model's state dict."""
    n = param_name
    for prefix in ("base_model.model.",):
        if n.startswith(prefix):
            n = n[len(prefix):]
    return n.rsplit(".lora_", 1)[0]


def project_adapter(tensors: dict, mats: dict, threshold: float, select: str = "threshold",
                    n_layers: int = 10) -> tuple[dict, dict[str, Any]]:
    """Project the LoRA B factors of low-similarity layers; returns (new tensors, per-layer report)."""
    import torch

    pairs: dict[str, dict[str, str]] = {}
    for name in tensors:
        if ".lora_A." in name:
            pairs.setdefault(_module_of(name), {})["A"] = name
        elif ".lora_B." in name:
            pairs.setdefault(_module_of(name), {})["B"] = name
    sims: dict[str, float] = {}
    for mod, ab in sorted(pairs.items()):
        if mod not in mats or "A" not in ab or "B" not in ab:
            continue
        a, b = tensors[ab["A"]].float(), tensors[ab["B"]].float()
        dw = b @ a
        pdw = mats[mod] @ dw
        denom = float(dw.norm()) * float(pdw.norm())
        sims[mod] = float((dw * pdw).sum()) / denom if denom > 0 else 1.0
    if select == "threshold":
        chosen = {m for m, s in sims.items() if s <= threshold}
    elif select == "number":
        chosen = set(sorted(sims, key=lambda m: sims[m])[:n_layers])
    else:
        raise ValueError(f"select must be 'threshold' or 'number', not {select!r}")
    out = dict(tensors)
    for mod in chosen:
        bname = pairs[mod]["B"]
        out[bname] = (mats[mod] @ tensors[bname].float()).to(tensors[bname].dtype).contiguous()
    vals = list(sims.values())
    report = {"layers": len(sims), "projected": len(chosen),
              "similarity_min": min(vals) if vals else None, "similarity_max": max(vals) if vals else None,
              "similarity_mean": sum(vals) / len(vals) if vals else None,
              "projected_layers": sorted(chosen)}
    return out, report


@DEFENSES.register("safelora")
class SafeLoRA:
    """SafeLoRA: project low-similarity LoRA layers onto the alignment subspace after fine-tuning (arXiv 2405.16833)."""

    name = "safelora"

    def __init__(self, safelora_threshold: float = DEFAULT_THRESHOLD, safelora_select: str = "threshold",
                 safelora_layers: int = 10, **_: Any) -> None:
        if safelora_select not in ("threshold", "number"):
            raise ValueError(f"safelora_select must be 'threshold' or 'number', not {safelora_select!r}")
        self.threshold = float(safelora_threshold)
        self.select = safelora_select
        self.n_layers = int(safelora_layers)

    def config(self) -> dict[str, Any]:
        return {"defense": self.name, "threshold": self.threshold, "select": self.select, "n_layers": self.n_layers}

    def prepare(self, ctx: DefenseContext) -> Prepared:
        if ctx.base_path is None or Path(ctx.base_path) == Path(ctx.aligned_path):
            raise UserError("defense safelora needs the weights before and after alignment; run with alignment "
                            "(not --no-align)")
        return Prepared()  # training is the undefended attack's (same cache entry)

    def training_data(self, examples: Sequence[Any], ctx: DefenseContext) -> list[Any]:
        return list(examples)

    def post_train(self, attack_dir: Path, attack_key: str, ctx: DefenseContext) -> tuple[Path, str]:
        from safetensors.torch import load_file, save_file

        from ..io import atomic_write_json
        from ..models import load_model
        from ..stages import _find_adapter

        mode = json.loads((attack_dir / "attack.json").read_text())["mode"]
        if mode != "lora":
            raise UserError("defense safelora projects LoRA updates: use --attack-mode lora")
        # aligned_key already hashes the base model and the alignment data/config
        key = ctx.cache.key("post_train", defense=self.config(), attack=attack_key, aligned=ctx.aligned_key)

        def build(tmp: Path) -> dict:
            src = _find_adapter(attack_dir / "adapter")
            tensors = load_file(str(src / "adapter_model.safetensors"))
            modules = sorted({_module_of(n) for n in tensors if ".lora_" in n})
            base_sd = load_model(ctx.base_path, trust_remote_code=ctx.trust_remote_code).state_dict()
            aligned_sd = load_model(ctx.aligned_path, trust_remote_code=ctx.trust_remote_code).state_dict()
            mats = alignment_matrices(base_sd, aligned_sd, modules)
            new, report = project_adapter(tensors, mats, self.threshold, self.select, self.n_layers)
            shutil.copytree(src, tmp / "adapter")
            save_file(new, str(tmp / "adapter" / "adapter_model.safetensors"))
            atomic_write_json(tmp / "attack.json", {"mode": "lora"})
            atomic_write_json(tmp / POST_TRAIN_REPORT, report)
            return {"safelora": report}

        folder = ctx.cache.build_dir("post_train", key, f"safelora:seed{ctx.seed}", build)
        return folder, key

