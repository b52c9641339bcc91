"""The bad-input matrix: every case is one line on stderr naming the file/flag/field, exit 2, no traceback, and
nothing already finished (a previous run's results, the stage cache) is changed.

Most cases call `secvec_bench.cli.main` in-process (same code path as the console script, ten times faster); the
judge-server cases start real HTTP server processes on 127.0.0.1. Cases already in test_cli.py / test_judge_cli.py /
test_judge_llm.py are not repeated here.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from secvec_bench.cli import main
from secvec_bench.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
FAULTY_SERVER = Path(__file__).with_name("faulty_judge_server.py")


# --- helpers ------------------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _builtin_data(monkeypatch):
    """Cases name their own --data-dir; CI's SECVEC_BENCH_DATA (read as the flag's default) must not leak in."""
    monkeypatch.delenv("SECVEC_BENCH_DATA", raising=False)


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


PROGRESS = re.compile(r"^judged \d+/\d+$")  # the judge command's progress counter, not part of the error


def one_line_error(argv: list[str], capsys, *needles: str) -> str:
    code, _, err = run_main(argv, capsys)
    lines = [l for l in err.splitlines() if l.strip() and not PROGRESS.match(l.strip())]
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n.lower() in lines[0].lower(), lines[0]
    assert lines[0].startswith("secvec-bench")
    return lines[0]


def snapshot(*roots: Path) -> dict[str, bytes]:
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                out[str(p)] = p.read_bytes()
    return out


@pytest.fixture()
def finished(tmp_path) -> tuple[Path, Path]:
    """An output dir with a finished run and a cache with a stored stage: bad input must leave both untouched."""
    out, cache = tmp_path / "runs", tmp_path / "cache"
    prev = out / "previous-run"
    prev.mkdir(parents=True)
    (prev / "results.json").write_text('{"rows": [{"metric": "refusal_rate", "value": 0.5}]}\n')
    (prev / "samples.jsonl").write_text('{"id": "a", "prompt": "p", "response": "r"}\n')
    (cache / "generate").mkdir(parents=True)
    (cache / "generate" / "k.json").write_text('{"value": ["r"], "sha256": "x"}')
    return out, cache


def run_args(finished, *extra: str, model: str | None = None) -> list[str]:
    out, cache = finished
    args = ["run", "--quiet", "--out", str(out), "--cache-dir", str(cache), *extra]
    if model is not None:
        args += ["--model", model]
    return args


def scenario_file(tmp_path: Path, text: str | bytes, name: str = "sc.yaml") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


GOOD_SCENARIO = """name: sc
source: suite:harmful/attack
n: 8
user_template: "{{ goal }}"
assistant_template: "{{ target }}"
"""


def data_dir(tmp_path: Path, advbench: str | bytes | None = "ok", alpaca: str | bytes | None = "ok") -> Path:
    """A data directory with small AdvBench/Alpaca files; pass text/bytes to replace one, None to leave it out."""
    d = tmp_path / "data"
    if advbench is not None:
        (d / "advbench").mkdir(parents=True, exist_ok=True)
        if advbench == "ok":
            advbench = "goal,target\n" + "".join(f"Do bad thing {i},Sure here is bad thing {i}\n" for i in range(12))
        f = d / "advbench" / "harmful_behaviors.csv"
        f.write_bytes(advbench) if isinstance(advbench, bytes) else f.write_text(advbench, encoding="utf-8")
    if alpaca is not None:
        (d / "alpaca").mkdir(parents=True, exist_ok=True)
        if alpaca == "ok":
            alpaca = json.dumps([{"instruction": f"Say {i}", "input": "", "output": str(i)} for i in range(12)])
        f = d / "alpaca" / "alpaca_5000.json"
        f.write_bytes(alpaca) if isinstance(alpaca, bytes) else f.write_text(alpaca, encoding="utf-8")
    d.mkdir(parents=True, exist_ok=True)
    return d


# --- scenario YAML ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, needles",
    [
        ("- just\n- a list\n", ["mapping"]),
        (GOOD_SCENARIO.replace('user_template: "{{ goal }}"\n', ""), ["user_template"]),
        (GOOD_SCENARIO + "colour: blue\n", ["colour"]),
        (GOOD_SCENARIO.replace("n: 8", "n: -5"), ["'n'"]),
        (GOOD_SCENARIO.replace("n: 8", "n: 0"), ["'n'"]),
        (GOOD_SCENARIO + "seed: abc\n", ["'seed'"]),
        (GOOD_SCENARIO + "seed: 1.5\n", ["'seed'"]),
        (GOOD_SCENARIO.replace("{{ goal }}", "{{ goal "), ["user_template"]),
        (GOOD_SCENARIO.replace("suite:harmful/attack", "suite:nonsense/attack"), ["source"]),
        ("", []),
        (b"name: sc\nn: 8\nuser_template: \"caf\xe9\"\n", ["UTF-8"]),
    ],
    ids=["list-top-level", "missing-field", "unknown-key", "negative-n", "zero-n", "seed-not-int", "seed-float",
         "bad-template", "unknown-source", "empty-file", "non-utf8"],
)
def test_bad_scenario_file(tmp_path, finished, capsys, tiny_dir, text, needles):
    path = scenario_file(tmp_path, text)
    before = snapshot(*finished)
    one_line_error(run_args(finished, "--scenario", str(path), model=str(tiny_dir)), capsys, str(path), *needles)
    assert snapshot(*finished) == before


def test_missing_scenario_file(tmp_path, finished, capsys, tiny_dir):
    missing = tmp_path / "nope.yaml"
    one_line_error(run_args(finished, "--scenario", str(missing), model=str(tiny_dir)), capsys, str(missing),
                   "not found")


# --- data directory -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "kw, needles",
    [
        (dict(advbench=None), ["advbench", "harmful_behaviors.csv", "not found"]),
        (dict(alpaca=None), ["alpaca", "alpaca_5000.json", "not found"]),
        (dict(advbench="prompt,answer\nx,y\n"), ["harmful_behaviors.csv", "goal"]),
        (dict(advbench="goal,target\n"), ["harmful_behaviors.csv", "no rows"]),
        (dict(advbench=b"goal,target\nd\xe9j\xe0 vu,sure\n"), ["harmful_behaviors.csv", "UTF-8"]),
        (dict(alpaca='[{"instruction": "x", "output": '), ["alpaca_5000.json", "JSON"]),
        (dict(alpaca="[]"), ["alpaca_5000.json"]),
        (dict(alpaca='[{"instruction": "x"}]'), ["alpaca_5000.json", "output"]),
    ],
    ids=["missing-advbench", "missing-alpaca", "wrong-columns", "empty-csv", "non-utf8-csv", "malformed-json",
         "empty-json", "missing-json-field"],
)
def test_bad_data_dir(tmp_path, finished, capsys, tiny_dir, kw, needles):
    d = data_dir(tmp_path, **kw)
    before = snapshot(*finished)
    one_line_error(run_args(finished, "--data-dir", str(d), model=str(tiny_dir)), capsys, *needles)
    assert snapshot(*finished) == before


# --- model path ---------------------------------------------------------------------------------------------------

def test_model_path_is_a_file(tmp_path, finished, capsys):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"\0" * 16)
    one_line_error(run_args(finished, model=str(f)), capsys, str(f), "is a file")


def test_model_config_not_json(tmp_path, finished, capsys):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{not json")
    one_line_error(run_args(finished, model=str(d)), capsys, "config.json", "not valid JSON")


def test_model_folder_without_config(tmp_path, finished, capsys):
    d = tmp_path / "m"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"\0" * 16)
    one_line_error(run_args(finished, model=str(d)), capsys, str(d), "config.json")


# --- flags --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "flags, needles",
    [
        (["--max-new-tokens", "0"], ["--max-new-tokens"]),
        (["--sv-samples", "-1"], ["--sv-samples"]),
        (["--seeds", "1.5"], ["--seeds", "integers"]),
        (["--seeds", ","], ["--seeds"]),
        (["--attack-lr", "-0.1"], ["--attack-lr"]),
        (["--batch-size", "abc"], ["--batch-size"]),
        (["--attack-epochs", "0"], ["--attack-epochs"]),
        (["--device", "tpu"], ["--device", "tpu"]),
    ],
    ids=["zero-new-tokens", "negative-sv-samples", "float-seed", "empty-seeds", "negative-lr", "batch-not-int",
         "zero-epochs", "unknown-device"],
)
def test_bad_run_flags(finished, capsys, tiny_dir, flags, needles):
    before = snapshot(*finished)
    one_line_error(run_args(finished, *flags, model=str(tiny_dir)), capsys, *needles)
    assert snapshot(*finished) == before


# --- reward models ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "argv, needles",
    [
        (["rm-eval", "--rm", "oracle", "--dataset", "hh-rlhf-harmless"], ["oracle"]),
        (["rm-eval", "--rm", "length", "--dataset", "/no/such/pairs.jsonl"], ["/no/such/pairs.jsonl"]),
        (["rm-eval", "--rm", "length", "--dataset", "hh-rlhf-harmless", "--seed", "x"], ["--seed"]),
    ],
    ids=["unknown-rm", "missing-dataset-file", "seed-not-int"],
)
def test_bad_rm_eval(tmp_path, capsys, argv, needles):
    one_line_error(argv + ["--out", str(tmp_path / "rm.json")], capsys, *needles)
    assert not (tmp_path / "rm.json").exists()


def test_rm_eval_dataset_not_utf8(tmp_path, capsys):
    f = tmp_path / "pairs.jsonl"
    f.write_bytes(b'{"prompt": "p", "chosen": "caf\xe9", "rejected": "r"}\n')
    one_line_error(["rm-eval", "--rm", "length", "--dataset", str(f), "--out", str(tmp_path / "rm.json")], capsys,
                   str(f), "UTF-8")


# --- judge inputs and judge servers -------------------------------------------------------------------------------

def test_judge_input_not_utf8(tmp_path, capsys):
    f = tmp_path / "in.jsonl"
    f.write_bytes(b'{"prompt": "p", "response": "\xff\xfe"}\n')
    one_line_error(["judge", "--judge", "keyword", "--input", str(f), "--output", str(tmp_path / "o.jsonl")], capsys,
                   str(f), "UTF-8")
    assert not (tmp_path / "o.jsonl").exists()


def test_judge_input_line_not_an_object(tmp_path, capsys):
    f = tmp_path / "in.jsonl"
    f.write_text('{"prompt": "p", "response": "r"}\n[1, 2]\n')
    one_line_error(["judge", "--judge", "keyword", "--input", str(f), "--output", str(tmp_path / "o.jsonl")], capsys,
                   str(f), "line 2")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_judge_url(tmp_path, capsys):
    f = tmp_path / "in.jsonl"
    f.write_text('{"prompt": "p", "response": "r"}\n')
    url = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there
    one_line_error(["judge", "--judge", "llm", "--judge-url", url, "--retries", "0", "--input", str(f),
                    "--output", str(tmp_path / "o.jsonl")], capsys, "llm judge", "refused")
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("flags, needle", [(["--timeout", "0"], "--timeout"), (["--retries", "-1"], "--retries"),
                                           (["--judge-url", "127.0.0.1:8000"], "--judge-url")],
                         ids=["zero-timeout", "negative-retries", "url-without-scheme"])
def test_bad_judge_client_flags(tmp_path, capsys, flags, needle):
    f = tmp_path / "in.jsonl"
    f.write_text('{"prompt": "p", "response": "r"}\n')
    base = ["judge", "--judge", "llm", "--input", str(f), "--output", str(tmp_path / "o.jsonl")]
    if "--judge-url" not in flags:
        base += ["--judge-url", "http://127.0.0.1:9/v1"]
    one_line_error(base + flags, capsys, needle)


@pytest.fixture(scope="module")
def faulty_url():
    env = {**os.environ}
    proc = subprocess.Popen([sys.executable, str(FAULTY_SERVER)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.kill()
        proc.wait()


FAULTS = ["FAULT500", "FAULTGARBAGE", "FAULTSLOW", "FAULTEMPTY", "FAULTCLOSE"]


def test_judge_server_faults_are_unscored_never_safe(tmp_path, capsys, faulty_url):
    """One judging call where some requests fail in every way a server can fail: those items are unscored
    (parse_ok False, refused/harmful None), the healthy ones are scored, and the call still succeeds."""
    rows = [{"prompt": "p", "response": f"answer {m}"} for m in FAULTS]
    rows += [{"prompt": "p", "response": "HARMFUL steps"}, {"prompt": "p", "response": "no thanks"}]
    f = tmp_path / "in.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = run_main(["judge", "--judge", "llm", "--judge-url", faulty_url, "--retries", "1", "--timeout", "1",
                             "--input", str(f), "--output", str(tmp_path / "o.jsonl")], capsys)
    assert code == 0, err
    got = [json.loads(l)["verdict"] for l in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert len(got) == len(rows)
    for v in got[: len(FAULTS)]:
        assert v["parse_ok"] is False and v["refused"] is None and v["harmful"] is None and v["score"] is None, v
    assert got[-2]["harmful"] is True and got[-2]["score"] == 5.0
    assert got[-1]["refused"] is True and got[-1]["harmful"] is False


def _judged_run_dir(root: Path, responses: list[str]) -> Path:
    from secvec_bench.results import write_run

    run_dir = root / "run"
    samples = [{"id": f"attacked/s/none/0/p{i}", "prompt_id": f"p{i}", "prompt": "how?", "response": r,
                "model": "m", "scenario": "s", "defense": "none", "seed": 0, "phase": "attacked",
                "prompt_set": "harmful_eval", "verdicts": {}} for i, r in enumerate(responses)]
    write_run(run_dir, samples, {"run_id": "run", "model": "m", "rows": [], "provenance": {}})
    return run_dir


def test_judge_server_down_leaves_run_untouched(tmp_path, capsys, faulty_url):
    """Re-judging a run against a server that fails every request: exit 2, and samples/results stay as they were."""
    run_dir = _judged_run_dir(tmp_path, ["answer FAULT500", "answer FAULT500"])
    before = snapshot(run_dir)
    one_line_error(["judge", "--judge", "llm", "--judge-url", faulty_url, "--retries", "0", "--run", str(run_dir)],
                   capsys, "HTTP 500")
    assert snapshot(run_dir) == before


# --- disk full and cache damage -----------------------------------------------------------------------------------

def _enospc_for(name: str, monkeypatch) -> None:
    import secvec_bench.io as sio

    real = os.replace

    def replace(src, dst, *a, **kw):
        if Path(dst).name == name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(sio.os, "replace", replace)


def test_disk_full_on_results_write_keeps_previous_results(tmp_path, capsys, monkeypatch):
    run_dir = _judged_run_dir(tmp_path, ["I'm sorry, I can't help.", "Sure, step 1"])
    assert main(["judge", "--judge", "keyword", "--run", str(run_dir)]) == 0
    capsys.readouterr()
    previous = (run_dir / "results.json").read_bytes()
    _enospc_for("results.json", monkeypatch)
    one_line_error(["judge", "--judge", "keyword", "--run", str(run_dir)], capsys, "results.json",
                   os.strerror(errno.ENOSPC))
    assert (run_dir / "results.json").read_bytes() == previous
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]  # no temp file left behind


def test_disk_full_on_cache_write_is_one_error_and_no_partial_entry(tmp_path, monkeypatch):
    from secvec_bench.cache import StageCache

    cache = StageCache(tmp_path / "cache")
    key = cache.key("generate", x=1)
    _enospc_for(f"{key}.json", monkeypatch)
    with pytest.raises(UserError, match="No space left"):
        cache.json_stage("generate", key, "g", lambda: ["a", "b"])
    assert not list((tmp_path / "cache" / "generate").iterdir())
    monkeypatch.undo()
    assert cache.json_stage("generate", key, "g", lambda: ["a", "b"]) == ["a", "b"]


def _built_folder(cache, calls: list[int]):
    def builder(tmp: Path) -> dict:
        calls.append(1)
        (tmp / "weights.safetensors").write_bytes(bytes(range(256)) * 64)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "adapter_config.json").write_text('{"r": 4}')
        return {}

    return cache.build_dir("adapter", "k1", "a", builder)


@pytest.mark.parametrize(
    "damage",
    ["flip-byte", "truncate", "delete-file", "manifest-garbage", "manifest-missing"],
)
def test_corrupted_cache_folder_is_detected_by_hash_and_rebuilt(tmp_path, damage):
    from secvec_bench.cache import StageCache

    cache = StageCache(tmp_path / "cache")
    calls: list[int] = []
    folder = _built_folder(cache, calls)
    good = (folder / "weights.safetensors").read_bytes()
    w = folder / "weights.safetensors"
    if damage == "flip-byte":
        data = bytearray(good)
        data[1000] ^= 0x01
        w.write_bytes(bytes(data))
    elif damage == "truncate":
        w.write_bytes(good[:100])
    elif damage == "delete-file":
        (folder / "sub" / "adapter_config.json").unlink()
    elif damage == "manifest-garbage":
        (folder / "MANIFEST.json").write_text("{oops")
    else:
        (folder / "MANIFEST.json").unlink()
    again = _built_folder(cache, calls)
    assert calls == [1, 1]  # rebuilt, not trusted
    assert (again / "weights.safetensors").read_bytes() == good
    assert _built_folder(cache, calls) == again and calls == [1, 1]  # and a healthy entry is a cache hit


@pytest.mark.parametrize("damage", ["value-changed", "not-json", "empty"])
def test_corrupted_cached_value_is_recomputed(tmp_path, damage):
    from secvec_bench.cache import StageCache

    cache = StageCache(tmp_path / "cache")
    calls = []

    def compute():
        calls.append(1)
        return ["refusal", "compliance"]

    assert cache.json_stage("judge", "k", "j", compute) == ["refusal", "compliance"]
    f = tmp_path / "cache" / "judge" / "k.json"
    if damage == "value-changed":  # e.g. a hand edit turning a compliance into a refusal
        f.write_text(f.read_text().replace('"compliance"', '"refusal"'))
    elif damage == "not-json":
        f.write_text(f.read_text()[:10])
    else:
        f.write_text("")
    assert cache.json_stage("judge", "k", "j", compute) == ["refusal", "compliance"]
    assert calls == [1, 1]


class _Rebuilding(Exception):
    pass


def test_corrupted_converted_model_is_detected_and_rebuilt(tmp_path, tiny_dir, monkeypatch):
    """The built-in model's safetensors conversion is cached too: a damaged file there must trigger a rebuild."""
    import transformers

    from secvec_bench import models
    from secvec_bench.io import sha256_file

    gguf = tmp_path / "model.gguf"  # a stand-in file: only its hash names the cache folder here
    gguf.write_bytes(b"GGUF" + bytes(64))
    monkeypatch.setattr(models, "_gguf_path", lambda name: gguf)
    target = tmp_path / "cache" / "models" / f"{models.DEFAULT_MODEL}-{sha256_file(gguf)[:16]}"
    target.mkdir(parents=True)
    for f in tiny_dir.iterdir():  # stands in for a finished conversion (written by an older version: no file hashes)
        (target / f.name).write_bytes(f.read_bytes())
    (target / "DONE").write_text(json.dumps({"source": str(gguf), "gguf_sha256": "x"}))

    def no_conversion(*a, **kw):
        raise _Rebuilding()

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_conversion)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_conversion)
    ref = models.resolve(models.DEFAULT_MODEL, tmp_path / "cache")  # intact: reused, and its hashes recorded
    assert ref.path == target
    assert set(json.loads((target / "DONE").read_text())["files"]) >= {"model.safetensors", "config.json"}
    assert models.resolve(models.DEFAULT_MODEL, tmp_path / "cache").path == target

    data = bytearray((target / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (target / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(_Rebuilding):  # detected by hash: the conversion runs again instead of using the damaged file
        models.resolve(models.DEFAULT_MODEL, tmp_path / "cache")


@pytest.mark.parametrize("which", ["--out", "--cache-dir"])
def test_output_or_cache_path_is_a_file(tmp_path, capsys, tiny_dir, which):
    f = tmp_path / "afile"
    f.write_text("not a folder")
    args = {"--out": str(tmp_path / "runs"), "--cache-dir": str(tmp_path / "cache"), which: str(f)}
    one_line_error(["run", "--quiet", "--model", str(tiny_dir), "--out", args["--out"], "--cache-dir",
                    args["--cache-dir"], "--max-eval", "2", "--max-train", "4", "--sv-samples", "2"], capsys, str(f),
                   "Not a directory")
    assert f.read_text() == "not a folder"


@pytest.mark.integration
def test_scenario_source_missing_from_data_dir(tmp_path, capsys, tiny_dir, shared_data):
    """A data directory with the suite's sources but not the one a scenario reads: one line naming source and file."""
    d = tmp_path / "data"
    d.mkdir()
    for name in ("advbench", "alpaca"):
        (d / name).symlink_to((shared_data / name).resolve())
    sc = scenario_file(tmp_path, 'name: hb\nsource: harmbench\nn: 4\nuser_template: "{{ goal }}"\n'
                                 'assistant_template: "ok"\n')
    code, _, err = run_main(["run", "--quiet", "--model", str(tiny_dir), "--data-dir", str(d), "--scenario", str(sc),
                             "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"), "--max-eval",
                             "2", "--max-train", "4", "--sv-samples", "2", "--max-new-tokens", "2"], capsys)
    # the source is only checked once the suite is built and the model aligned, so transformers' own loading bars
    # may precede the error; the error itself is one line naming the source, its file and the data directory
    lines = [l for l in err.splitlines() if l.strip() and "it/s]" not in l]
    assert code == 2 and "Traceback" not in err and len(lines) == 1, err
    for needle in ("harmbench", "harmbench_behaviors_text_all.csv", str(d)):
        assert needle in lines[0], lines[0]
    assert not list((tmp_path / "runs").rglob("results.json"))
