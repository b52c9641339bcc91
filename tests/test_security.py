"""Nothing unsafe from untrusted data: no remote code unless asked, weights only from safetensors/GGUF (a pickled
`.bin` is never unpickled), no eval/pickle/unsafe YAML in the package, and API keys come from the environment and
are never written to results, caches or logs."""

from __future__ import annotations

import ast
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from secvec_bench.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "secvec_bench"
FAULTY_SERVER = Path(__file__).with_name("faulty_judge_server.py")


# --- trust_remote_code --------------------------------------------------------------------------------------------

def test_trust_remote_code_is_off_unless_asked(tiny_dir, monkeypatch):
    import transformers

    from secvec_bench import models

    calls = []

    def spy(real):
        def wrapped(*args, **kwargs):
            calls.append(kwargs.get("trust_remote_code", False))
            return real(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        spy(transformers.AutoModelForCausalLM.from_pretrained))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", spy(transformers.AutoTokenizer.from_pretrained))
    models.load_tokenizer(tiny_dir)
    models.load_model(tiny_dir)
    assert calls == [False, False]
    models.load_model(tiny_dir, trust_remote_code=True)  # the opt-in reaches transformers
    assert calls[-1] is True


def test_cli_and_config_default_to_no_remote_code():
    from secvec_bench.cli import build_parser
    from secvec_bench.commands.run import config_from_args
    from secvec_bench.pipeline import RunConfig

    assert RunConfig().trust_remote_code is False
    assert config_from_args(build_parser().parse_args(["run"])).trust_remote_code is False
    assert config_from_args(build_parser().parse_args(["run", "--trust-remote-code"])).trust_remote_code is True


def _package_sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_hard_coded_trust_remote_code_true():
    offenders = []
    for path in _package_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                if isinstance(node.value, ast.Constant) and node.value.value is True:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.value.lineno}")
    assert not offenders, offenders


# --- weights only from safetensors / GGUF -------------------------------------------------------------------------

class _Payload:
    """Unpickling this creates a marker file: proof that a pickle from a model folder was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _malicious_bin(folder: Path, marker: Path) -> None:
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"model.embed_tokens.weight": _Payload(marker)}))


def test_folder_with_only_pickled_weights_is_refused(tiny_dir, tmp_path):
    from test_cli import one_line_error

    d = tmp_path / "binonly"
    d.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (d / name).write_bytes((tiny_dir / name).read_bytes())
    marker = tmp_path / "PWNED"
    _malicious_bin(d, marker)
    env = {k: v for k, v in os.environ.items() if k != "SECVEC_BENCH_DATA"}  # built-in data: fail fast on the model
    proc = subprocess.run([sys.executable, "-m", "secvec_bench", "run", "--model", str(d), "--out",
                           str(tmp_path / "runs"), "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    one_line_error(proc, "safetensors", str(d))
    assert not marker.exists()


def test_pickled_weights_are_never_unpickled(tiny_dir, tmp_path):
    """Loaders handed a folder with a malicious pytorch_model.bin: either refuse, or load the safetensors beside it;
    the pickle never runs."""
    from secvec_bench import models
    from secvec_bench.embeddings import Embedder

    marker = tmp_path / "PWNED"
    both = tmp_path / "both"
    both.mkdir()
    for f in tiny_dir.iterdir():
        (both / f.name).write_bytes(f.read_bytes())
    _malicious_bin(both, marker)
    models.load_model(both)  # safetensors are there: used, the .bin ignored
    assert not marker.exists()

    binonly = tmp_path / "binonly"
    binonly.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (binonly / name).write_bytes((tiny_dir / name).read_bytes())
    _malicious_bin(binonly, marker)
    with pytest.raises(UserError):
        models.load_model(binonly)
    with pytest.raises(UserError):
        models.resolve(str(binonly), tmp_path / "cache")
    with pytest.raises(Exception):  # the embedder falls back to transformers' loader: weights_only, so it refuses
        Embedder(model_dir=binonly)
    assert not marker.exists()


# --- no eval / pickle / unsafe YAML anywhere in the package -------------------------------------------------------

def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def unsafe_calls(source: str) -> list[str]:
    """Calls that can execute code hidden in data: eval/exec, pickle/marshal/shelve/dill loads, torch.load without
    weights_only=True, yaml.load without a safe loader, numpy loads with allow_pickle=True, shell=True."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        short = name.rsplit(".", 1)[-1]
        bad = None
        if name in ("eval", "exec", "builtins.eval", "builtins.exec", "compile"):
            bad = name
        elif name.split(".")[0] in ("pickle", "cPickle", "dill", "marshal", "shelve", "joblib", "cloudpickle") and (
            short in ("load", "loads", "open", "Unpickler")
        ):
            bad = name
        elif name in ("torch.load",):
            wo = _kw(node, "weights_only")
            if not (isinstance(wo, ast.Constant) and wo.value is True):
                bad = f"{name} without weights_only=True"
        elif name in ("yaml.load", "yaml.load_all"):
            loader = _kw(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if loader is None or "Safe" not in _dotted(loader):
                bad = f"{name} without SafeLoader"
        elif name in ("yaml.unsafe_load", "yaml.full_load", "yaml.unsafe_load_all", "yaml.full_load_all"):
            bad = name
        elif short == "load" and name.startswith(("np.", "numpy.")):
            ap = _kw(node, "allow_pickle")
            if isinstance(ap, ast.Constant) and ap.value is True:
                bad = f"{name} with allow_pickle=True"
        elif isinstance(_kw(node, "shell"), ast.Constant) and _kw(node, "shell").value is True:
            bad = f"{name} with shell=True"
        if bad:
            out.append(f"line {node.lineno}: {bad}")
    return out


def test_package_has_no_code_execution_from_data():
    offenders = {}
    for path in _package_sources():
        found = unsafe_calls(path.read_text(encoding="utf-8"))
        if found:
            offenders[str(path.relative_to(ROOT))] = found
    assert not offenders, offenders


@pytest.mark.parametrize("snippet", [
    "eval(text)", "exec(code)", "import pickle\npickle.loads(b)", "torch.load(p)", "torch.load(p, weights_only=False)",
    "yaml.load(t)", "yaml.load(t, Loader=yaml.Loader)", "yaml.unsafe_load(t)", "np.load(p, allow_pickle=True)",
    "subprocess.run(cmd, shell=True)", "marshal.loads(b)",
])
def test_scanner_catches_unsafe_calls(snippet):
    assert unsafe_calls(snippet), snippet  # the scan above cannot pass vacuously


@pytest.mark.parametrize("snippet", [
    "torch.load(p, weights_only=True)", "yaml.safe_load(t)", "yaml.load(t, Loader=yaml.SafeLoader)",
    "np.load(p, allow_pickle=False)", "model.eval()", "json.loads(t)",
])
def test_scanner_allows_safe_calls(snippet):
    assert not unsafe_calls(snippet)


# --- API keys -----------------------------------------------------------------------------------------------------

TOKEN = "sk-secvec-test-7f3a9c1e5b2d48e6a0c4f9d8b7e6a5c4"


def _all_text_under(*roots: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for root in roots for p in root.rglob("*") if p.is_file()}


@pytest.fixture()
def keyed_server():
    env = {**os.environ, "FAULT_REQUIRED_KEY": TOKEN}
    proc = subprocess.Popen([sys.executable, str(FAULTY_SERVER)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        yield f"http://127.0.0.1:{int(proc.stdout.readline())}/v1"
    finally:
        proc.kill()
        proc.wait()


def test_api_key_only_from_env_and_never_written(tmp_path, keyed_server):
    """A real `judge --run` subprocess against a server that requires the key, including a reply that echoes the
    Authorization header back (a leaky proxy): the key is sent, and appears in no file, log line or output."""
    from secvec_bench.results import write_run

    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    responses = ["I'm sorry, I can't.", "HARMFUL step 1", "answer FAULTECHOKEY", "answer FAULT500", "answer FAULTGARBAGE"]
    samples = [{"id": f"attacked/s/none/0/p{i}", "prompt_id": f"p{i}", "prompt": "how?", "response": r, "model": "m",
                "scenario": "s", "defense": "none", "seed": 0, "phase": "attacked", "prompt_set": "harmful_eval",
                "verdicts": {}} for i, r in enumerate(responses)]
    write_run(run_dir, samples, {"run_id": "run", "model": "m", "rows": [], "provenance": {}})
    env = {**os.environ, "SECVEC_JUDGE_API_KEY": TOKEN, "SECVEC_BENCH_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "-m", "secvec_bench", "judge", "--judge", "llm", "--judge-url", keyed_server,
                           "--retries", "0", "--run", str(run_dir)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    verdicts = [json.loads(l)["verdicts"]["llm"] for l in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert [v["score"] for v in verdicts[:2]] == [1.0, 5.0]  # the key was sent: the server answered
    assert all(not v["parse_ok"] for v in verdicts[2:])
    assert TOKEN not in proc.stdout and TOKEN not in proc.stderr
    for path, data in _all_text_under(run_dir, tmp_path).items():
        assert TOKEN.encode() not in data, path
    # the provenance names the variable, never its value
    prov = json.loads((run_dir / "results.json").read_text())["provenance"]["judges"]["llm"]
    assert prov.get("api_key_env") == "SECVEC_JUDGE_API_KEY"

    # a wrong key: HTTP 401, a one-line error that does not print the key either
    env["SECVEC_JUDGE_API_KEY"] = TOKEN[::-1]
    bad = subprocess.run([sys.executable, "-m", "secvec_bench", "judge", "--judge", "llm", "--judge-url", keyed_server,
                          "--retries", "0", "--run", str(run_dir)], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "401" in bad.stderr
    assert TOKEN[::-1] not in bad.stderr + bad.stdout


def test_api_key_is_not_a_flag():
    """Keys are never passed on the command line (visible in `ps` and shell history): only an env var name is."""
    from secvec_bench.cli import build_parser

    text = " ".join(a.option_strings[0] for a in build_parser()._actions if a.option_strings)
    sub = build_parser()._subparsers._group_actions[0].choices
    flags = {o for p in sub.values() for a in p._actions for o in a.option_strings}
    assert not any(f in flags for f in ("--api-key", "--key", "--token", "--openai-api-key")), sorted(flags)
    assert "--api-key" not in text
