"""Human-label sources and splits: HH-RLHF transcript parsing, user JSONL files, bad input, prompt-disjoint splits."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from secvec_bench.errors import UserError
from secvec_bench.rm import Pair
from secvec_bench.rm.datasets import (
    PAIRWISE_SPLIT, SplitOverlapError, SplitSpec, assert_disjoint, load_dataset, split_by_group, split_transcript,
)


@pytest.fixture()
def shared_data_dir() -> Path:
    root = Path(os.environ.get("SECVEC_BENCH_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
    if not (root / "hh-rlhf" / "harmless-base" / "test.jsonl.gz").exists():
        pytest.skip(f"public data not found at {root}")
    return root


def test_split_transcript_single_and_multi_turn():
    p, r, first = split_transcript("\n\nHuman: how do I pick a lock?\n\nAssistant: I can't help with that.")
    assert (p, r, first) == ("how do I pick a lock?", "I can't help with that.", "how do I pick a lock?")
    t = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: steal a car?\n\nAssistant: No."
    p, r, first = split_transcript(t)
    assert r == "No." and first == "hi"
    assert p == "Human: hi\n\nAssistant: hello\n\nHuman: steal a car?"
    assert split_transcript("\n\nHuman: only a question") is None
    assert split_transcript("no markers") is None


def _write_hh(tmp_path, rows):
    d = tmp_path / "hh-rlhf" / "harmless-base"
    d.mkdir(parents=True)
    with gzip.open(d / "test.jsonl.gz", "wt", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return tmp_path


def test_hh_loader_skips_mismatched_transcripts(tmp_path):
    rows = [
        {"chosen": "\n\nHuman: q1\n\nAssistant: safe", "rejected": "\n\nHuman: q1\n\nAssistant: harmful"},
        {"chosen": "\n\nHuman: q2\n\nAssistant: a", "rejected": "\n\nHuman: OTHER\n\nAssistant: b"},
    ]
    ds = load_dataset("hh-rlhf-harmless", _write_hh(tmp_path, rows))
    assert ds.kind == "pairwise" and len(ds) == 1 and ds.skipped == 1
    assert ds.pairs[0] == Pair("q1", "safe", "harmful", group="q1")


def test_hh_loader_bad_input(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="test.jsonl.gz"):
        load_dataset("hh-rlhf-harmless", tmp_path)
    with pytest.raises(UserError, match="needs string fields 'chosen' and 'rejected'"):
        load_dataset("hh-rlhf-harmless", _write_hh(tmp_path / "a", [{"chosen": "x"}]))
    with pytest.raises(UserError, match="no usable records"):
        load_dataset("hh-rlhf-harmless", _write_hh(tmp_path / "b", [{"chosen": "x", "rejected": "y"}]))
    monkeypatch.delenv("SECVEC_BENCH_DATA", raising=False)
    with pytest.raises(UserError, match="--data-dir"):
        load_dataset("hh-rlhf-harmless", None)
    monkeypatch.setenv("SECVEC_BENCH_DATA", str(tmp_path / "nope"))
    with pytest.raises(UserError, match="not a directory"):
        load_dataset("hh-rlhf-harmless", None)


def test_harmbench_loader_majority_and_categories(tmp_path):
    d = tmp_path / "harmbench"
    d.mkdir()
    rec = lambda h: {"test_case": "q", "generation": "g", "human_0": h[0], "human_1": h[1], "human_2": h[2]}  # noqa
    (d / "text_behaviors_val_set.json").write_text(json.dumps({"b1": [rec("110"), rec("100")], "b2": [rec("111")]}))
    (d / "harmbench_behaviors_text_all.csv").write_text(
        "Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID\r\nx,standard,illegal,,,b1\r\n")
    ds = load_dataset("harmbench-val", tmp_path)
    assert [i.harmful for i in ds.items] == [True, False, True]
    assert [i.category for i in ds.items] == ["illegal", "illegal", None] and ds.has_categories
    (d / "text_behaviors_val_set.json").write_text(json.dumps({"b1": [{"test_case": "q", "generation": "g"}]}))
    with pytest.raises(UserError, match="human_0"):
        load_dataset("harmbench-val", tmp_path)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_user_jsonl_pairwise_and_pointwise(tmp_path):
    ds = load_dataset(str(_jsonl(tmp_path / "p.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c",
                                                          "category": "x"}])))
    assert ds.kind == "pairwise" and ds.pairs[0].category == "x" and ds.has_categories
    rows = [{"prompt": "a", "response": "r", "human_label": v} for v in (True, 0, "harmful", "safe", "1")]
    ds = load_dataset(str(_jsonl(tmp_path / "q.jsonl", rows)))
    assert ds.kind == "pointwise" and [i.harmful for i in ds.items] == [True, False, True, False, True]


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"prompt": "a", "answer": "b"}], "needs fields prompt, chosen, rejected"),
        ([{"prompt": "a", "chosen": "b", "rejected": 3}], "field 'rejected' must be a string"),
        ([{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "a", "chosen": "b"}], "record 2 has no field"),
        ([{"prompt": "a", "response": "b", "human_label": "maybe"}], "human_label"),
        ([], "is empty"),
    ],
)
def test_user_jsonl_bad_input(tmp_path, rows, message):
    path = _jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(UserError, match=message) as exc:
        load_dataset(str(path))
    assert str(path) in str(exc.value)


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_dataset(str(tmp_path / "missing.jsonl"))
    with pytest.raises(UserError, match="unknown RM dataset"):
        load_dataset("no-such-dataset", tmp_path)
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    with pytest.raises(UserError, match="line 1 is not valid JSON"):
        load_dataset(str(tmp_path / "broken.jsonl"))


def _pairs(n, groups=None):
    return [Pair(f"prompt {i}", "c", "r", group=groups[i] if groups else f"g{i}") for i in range(n)]


def test_split_is_by_group_and_disjoint():
    groups = [f"g{i % 37}" for i in range(500)]
    split = split_by_group(_pairs(500, groups), PAIRWISE_SPLIT)
    sets = {k: {p.group for p in v} for k, v in split.items()}
    assert not (sets["train"] & sets["eval"]) and not (sets["dev"] & sets["eval"]) and not (sets["train"] & sets["dev"])
    assert sum(len(v) for v in split.values()) == 500
    again = split_by_group(_pairs(500, groups), PAIRWISE_SPLIT)
    assert [p.prompt for p in again["eval"]] == [p.prompt for p in split["eval"]]  # deterministic
    other = split_by_group(_pairs(500, groups), SplitSpec(0.5, 0.15, seed=1))
    assert [p.prompt for p in other["eval"]] != [p.prompt for p in split["eval"]]


def test_assert_disjoint_catches_shared_group_or_prompt():
    a = [Pair("Same prompt", "c", "r", group="g1")]
    with pytest.raises(SplitOverlapError):
        assert_disjoint(a, [Pair("other", "c", "r", group="g1")])
    with pytest.raises(SplitOverlapError):
        assert_disjoint(a, [Pair("  same   PROMPT ", "c", "r", group="g2")])
    assert_disjoint(a, [Pair("other", "c", "r", group="g2")])


@pytest.mark.integration
def test_real_hh_and_harmbench(shared_data_dir):
    hh = load_dataset("hh-rlhf-harmless", shared_data_dir)
    assert hh.kind == "pairwise" and len(hh) > 2000 and hh.skipped < 50
    split = split_by_group(hh.pairs, PAIRWISE_SPLIT)
    assert_disjoint(split["train"], split["eval"])
    hb = load_dataset("harmbench-val", shared_data_dir)
    assert len(hb) == 602 and hb.has_categories
    assert sum(i.harmful for i in hb.items) > 200
