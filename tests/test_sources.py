"""Data sources: every public loader on the shared data, file hashes, malformed files, the pinned-fetch path."""

from __future__ import annotations

import io
import gzip
import json

import pytest

from secvec_bench.data import sources as S
from secvec_bench.errors import UserError
from secvec_bench.io import sha256_file

EXPECTED = {  # source -> (records, a field every record has non-empty)
    "advbench": (520, "target"),
    "harmbench": (200, "goal"),
    "jailbreakbench": (100, "target"),
    "strongreject": (313, "goal"),
    "alpaca": (4998, "output"),
    "dolly": (387, "output"),
    "aoa": (10, "system"),
    "aoa_llama2": (10, "system"),
    "hh_rlhf_harmless": (None, "rejected"),
    "xstest": (450, "prompt"),
    "mt_bench": (80, "prompt"),
}


def test_every_public_source_is_registered_with_a_pin():
    assert set(EXPECTED) <= set(S.SOURCES.names())
    for name in EXPECTED:
        pin = S.SPECS[name].pin
        assert len(pin.revision) == 40 and len(pin.sha256) == 64
        assert pin.url.startswith("https://raw.githubusercontent.com/") and pin.revision in pin.url


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loader_on_shared_data(shared_data, name):
    count, key = EXPECTED[name]
    data = S.load_source(name, shared_data)
    spec = S.SPECS[name]
    assert data.sha256 == sha256_file(shared_data / spec.local) == spec.pin.sha256
    if count is not None:
        assert len(data.records) == count
    ids = [r["id"] for r in data.records]
    assert len(set(ids)) == len(ids)
    assert all(r[key] for r in data.records)
    assert set(S.source_fields(name)) <= set(data.records[0])


@pytest.mark.integration
def test_hh_pairs_share_the_prefix_and_differ_at_the_end(shared_data):
    recs = S.load_source("hh_rlhf_harmless", shared_data).records
    assert len(recs) > 2000
    assert all(r["chosen"] != r["rejected"] and r["n_turns"] >= 1 for r in recs)
    assert sum(r["n_turns"] == 1 for r in recs) > 500


def test_missing_data_dir_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="needs a data directory"):
        S.load_source("harmbench", None)
    with pytest.raises(UserError, match="file not found.*harmbench_behaviors_text_all.csv"):
        S.load_source("harmbench", tmp_path)
    assert not S.source_available("harmbench", tmp_path) and S.source_available("builtin_benign", None)


def test_malformed_files_are_one_line_errors(tmp_path):
    (tmp_path / "xstest").mkdir()
    (tmp_path / "xstest" / "xstest_prompts.csv").write_text("id,text\n1,hello\n")
    with pytest.raises(UserError, match=r"xstest.*lacks field\(s\) prompt"):
        S.load_source("xstest", tmp_path)
    d = tmp_path / "llm-finetuning-safety"
    d.mkdir()
    (d / "mt_bench_question.jsonl").write_text('{"question_id": 1, "turns": ["a"]}\n{not json\n')
    with pytest.raises(UserError, match="line 2 is not valid JSON"):
        S.load_source("mt_bench", tmp_path)
    (tmp_path / "hh-rlhf" / "harmless-base").mkdir(parents=True)
    (tmp_path / "hh-rlhf" / "harmless-base" / "test.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(UserError, match="not valid gzip"):
        S.load_source("hh_rlhf_harmless", tmp_path)


def test_local_file_parsing_and_hash(tmp_path):
    (tmp_path / "hh-rlhf" / "harmless-base").mkdir(parents=True)
    rows = [{"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go away"},
            {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: DIFFERENT\n\nAssistant: c"}]
    blob = gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode())
    (tmp_path / "hh-rlhf" / "harmless-base" / "test.jsonl.gz").write_bytes(blob)
    data = S.load_source("hh_rlhf_harmless", tmp_path)
    assert len(data.records) == 1  # the second pair differs before its final turn: not a final-turn pair
    r = data.records[0]
    assert (r["prompt"], r["chosen"], r["rejected"], r["n_turns"]) == ("hi", "hello", "go away", 1)
    assert data.sha256 == S.sha256_bytes(blob)


class _Resp(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_hub_mode_fetches_the_pin_and_verifies_its_hash(monkeypatch):
    body = b'{"question_id": 1, "category": "c", "turns": ["Hello?", "More?"]}\n'
    seen = []

    def fake_urlopen(url, timeout):
        seen.append(url)
        return _Resp(body)

    monkeypatch.setattr(S.urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(UserError, match="has sha256 .* pinned"):
        S.load_source("mt_bench", S.HUB)
    assert seen == [S.SPECS["mt_bench"].pin.url]
    pinned = S.SourceSpec(**{**S.SPECS["mt_bench"].__dict__,
                             "pin": S.Pin("o/r", "a" * 40, "q.jsonl", S.sha256_bytes(body))})
    data = S.load_spec(pinned, S.HUB)
    assert data.records[0]["prompt"] == "Hello?" and data.origin == f"o/r@{'a' * 40}:q.jsonl"


def test_hub_fetch_failure_is_a_user_error(monkeypatch):
    def boom(url, timeout):
        raise OSError("network unreachable")

    monkeypatch.setattr(S.urllib.request, "urlopen", boom)
    with pytest.raises(UserError, match="cannot fetch"):
        S.load_source("advbench", S.HUB)
