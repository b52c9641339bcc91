"""Property tests (hypothesis): loaders never fail with anything but a UserError, the keyword and llm-score parsers
are consistent on any text, and the statistics respect their bounds, symmetries and intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from secvec_bench import stats
from secvec_bench.errors import UserError
from secvec_bench.io import read_json, read_jsonl
from secvec_bench.judging.keyword import KeywordJudge, normalise
from secvec_bench.judging.llm import MAX_SCORE, MIN_SCORE, parse_judge_output, verdict_from_output
from secvec_bench.metrics import rows_from_samples
from secvec_bench.scenarios import load_scenario_file

FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

JUDGE = KeywordJudge()
APOSTROPHES = ["\u2019", "\u2018", "\u02bc", "`", "\u00b4"]

# Text that looks like the inputs we meet: JSON/YAML punctuation, refusal phrases, apostrophes, control bytes.
FRAGMENTS = st.sampled_from(['{', '}', '[', ']', '"', ':', ',', '\n', '- ', 'name: x', 'n: 3', '{{ goal }}', '{%',
                             "I'm sorry", "I can't", "I can\u2019t", 'Sure, here is', '\u00e9', '\x00', '\ufeff',
                             '\t', 'null', 'true', '1e999', 'NaN', '&anchor', '*anchor', '!!python/object:os.system',
                             'extends: benign', 'source: suite:harmful/attack', 'poison:', '  ratio: 2'])
MESSY_TEXT = st.one_of(st.text(max_size=200), st.lists(FRAGMENTS, max_size=30).map("".join))


# --- loaders ------------------------------------------------------------------------------------------------------

@FAST
@given(data=st.one_of(st.binary(max_size=300), MESSY_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_read_jsonl_and_json_raise_only_user_errors(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("j") / "f.jsonl"
    p.write_bytes(data)
    try:
        rows = read_jsonl(p)
        assert all(isinstance(r, dict) for r in rows)
    except UserError as exc:
        assert str(p) in str(exc) and "\n" not in str(exc)
    try:
        read_json(p)
    except UserError as exc:
        assert str(p) in str(exc) and "\n" not in str(exc)


SCENARIO_KEYS = ["name", "description", "category", "source", "n", "seed", "system_prompt", "user_template",
                 "assistant_template", "poison", "where", "fallback", "extends", "harmful", "ratio", "zzz"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 300), st.floats(allow_nan=True),
                    st.sampled_from(["suite:harmful/attack", "suite:benign/attack", "{{ goal }}", "{{ nope }}",
                                     "{{ goal", "benign", "explicit_harmful", "sc", ""]), st.text(max_size=20))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.sampled_from(SCENARIO_KEYS), inner,
                                                                       max_size=4)), max_leaves=8)


@FAST
@given(text=MESSY_TEXT)
def test_scenario_loader_on_arbitrary_text_raises_only_user_errors(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("s") / "sc.yaml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass") if "\ud800" not in text else p.write_bytes(b"\xff")
    try:
        load_scenario_file(p)
    except UserError as exc:
        assert "\n" not in str(exc)


@FAST
@given(spec=st.dictionaries(st.sampled_from(SCENARIO_KEYS), VALUES, max_size=8))
def test_scenario_loader_on_arbitrary_mappings_raises_only_user_errors(tmp_path_factory, spec):
    p = tmp_path_factory.mktemp("s") / "sc.yaml"
    p.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    try:
        sc = load_scenario_file(p)
    except UserError as exc:
        assert "\n" not in str(exc)
    else:  # anything accepted is well-formed
        assert isinstance(sc.n, int) and sc.n > 0 and isinstance(sc.seed, int)


# --- keyword judge ------------------------------------------------------------------------------------------------

@FAST
@given(text=MESSY_TEXT)
def test_keyword_normalise_is_idempotent(text):
    once = normalise(text)
    assert normalise(once) == once


@FAST
@given(text=MESSY_TEXT, which=st.sampled_from(APOSTROPHES))
def test_keyword_apostrophe_variants_are_equivalent(text, which):
    curly = text.replace("'", which)
    assert normalise(curly) == normalise(text)
    assert JUDGE.score("p", curly) == JUDGE.score("p", text)


@FAST
@given(text=MESSY_TEXT)
def test_keyword_verdict_fields_are_consistent(text):
    v = JUDGE.score("p", text)
    if not text.strip():
        assert (v.parse_ok, v.refused, v.harmful) == (False, None, None)  # empty -> unscored, never "safe"
    else:
        assert v.parse_ok is True and isinstance(v.refused, bool) and v.harmful is (not v.refused)
    assert JUDGE.score_batch(["p"], [text]) == [v]


@FAST
@given(ws=st.text(alphabet=" \t\n\r\u00a0\u2003", max_size=10))
def test_keyword_whitespace_only_is_unscored(ws):
    v = JUDGE.score("p", ws)
    assert v.parse_ok is False and v.refused is None and v.harmful is None


@FAST
@given(text=st.one_of(st.none(), MESSY_TEXT, st.builds(lambda a, n, b: f"{a}#thescore: {n}{b}", MESSY_TEXT,
                                                       st.integers(-3, 12), MESSY_TEXT)))
def test_llm_score_parser_never_raises_and_is_consistent(text):
    p = parse_judge_output(text)
    assert p.score is None or MIN_SCORE <= p.score <= MAX_SCORE
    assert (p.score is not None) == (p.status == "ok")
    v = verdict_from_output(text)
    if v.parse_ok:
        assert v.score == p.score and v.harmful == (p.score == MAX_SCORE) and v.refused == (p.score == MIN_SCORE)
    else:
        assert v.refused is None and v.harmful is None and v.score is None


# --- statistics ---------------------------------------------------------------------------------------------------

FLAGS = st.lists(st.booleans(), min_size=1, max_size=40)


def _inside(e: stats.Estimate) -> bool:
    return e.low - 1e-12 <= e.value <= e.high + 1e-12


@SLOW
@given(flags=FLAGS, seed=st.integers(0, 5))
def test_proportion_bounds_and_interval_contains_estimate(flags, seed):
    e = stats.proportion(flags, seed=seed)
    assert 0.0 <= e.low <= e.value <= e.high <= 1.0 and e.n == len(flags)
    assert e.value == pytest.approx(sum(flags) / len(flags))
    assert stats.proportion(flags, seed=seed) == e  # seeded: a rerun gives the same interval


@FAST
@given(x=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=30))
def test_bootstrap_mean_interval_contains_estimate(x):
    e = stats.bootstrap(lambda a: float(a.mean()), np.asarray(x), n_boot=200)
    assert _inside(e) and min(x) - 1e-9 <= e.low and e.high <= max(x) + 1e-9


LABELS = st.sampled_from(["safe", "unsafe", "unsure"])


@FAST
@given(pairs=st.lists(st.tuples(LABELS, LABELS), min_size=1, max_size=40))
def test_kappa_symmetric_and_bounded(pairs):
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    k = stats.cohen_kappa(a, b)
    assert k == pytest.approx(stats.cohen_kappa(b, a))
    assert -1.0 - 1e-9 <= k <= 1.0 + 1e-9
    assert stats.cohen_kappa(a, a) == 1.0


@FAST
@given(pairs=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=40))
def test_confusion_rates_bounded_and_complementary(pairs):
    pred, truth = [p[0] for p in pairs], [p[1] for p in pairs]
    for f in (stats.accuracy, stats.sensitivity, stats.specificity):
        v = f(pred, truth)
        assert math.isnan(v) or 0.0 <= v <= 1.0
    assert stats.accuracy(pred, truth) == stats.accuracy(truth, pred)
    # swapping both labels swaps sensitivity and specificity
    neg = lambda xs: [not x for x in xs]  # noqa: E731
    s1, s2 = stats.sensitivity(pred, truth), stats.specificity(neg(pred), neg(truth))
    assert (math.isnan(s1) and math.isnan(s2)) or s1 == s2
    c = stats.confusion(pred, truth)
    assert sum(c.values()) == len(pairs)


SCORED = st.lists(st.tuples(st.floats(-10, 10, allow_nan=False), st.booleans()), min_size=2, max_size=40)


@FAST
@given(data=SCORED)
def test_auroc_bounds_and_symmetries(data):
    s = [d[0] for d in data]
    y = [d[1] for d in data]
    assume(any(y) and not all(y))
    a = stats.auroc(s, y)
    assert 0.0 <= a <= 1.0
    assert stats.auroc([-v for v in s], y) == pytest.approx(1 - a)
    assert stats.auroc(s, [not v for v in y]) == pytest.approx(1 - a)
    assert stats.auroc([2 * v for v in s], y) == pytest.approx(a)  # rank-based: invariant to monotone maps
    assert math.isnan(stats.auroc(s, [True] * len(s)))


@FAST
@given(pairs=st.lists(st.tuples(st.floats(-5, 5), st.floats(-5, 5)), min_size=1, max_size=30))
def test_pairwise_accuracy_antisymmetric(pairs):
    c, r = [p[0] for p in pairs], [p[1] for p in pairs]
    a = stats.pairwise_accuracy(c, r)
    assert 0.0 <= a <= 1.0 and a + stats.pairwise_accuracy(r, c) == pytest.approx(1.0)


@FAST
@given(data=st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=40),
       bins=st.integers(1, 15))
def test_ece_bounded(data, bins):
    e = stats.expected_calibration_error([d[0] for d in data], [d[1] for d in data], bins=bins)
    assert 0.0 <= e <= 1.0 + 1e-12


@FAST
@given(obs=st.floats(0, 1), sens=st.floats(0, 1), spec=st.floats(0, 1))
def test_rogan_gladen_bounded_or_undefined(obs, sens, spec):
    v = stats.rogan_gladen(obs, sens, spec)
    if sens + spec <= 1:
        assert math.isnan(v)
    else:
        assert 0.0 <= v <= 1.0
        if sens == 1.0 and spec == 1.0:
            assert v == pytest.approx(obs)  # a perfect judge needs no correction


VERDICT = st.one_of(
    st.builds(lambda r: {"judge": "keyword", "refused": r, "harmful": not r, "score": None, "parse_ok": True}, st.booleans()),
    st.just({"judge": "keyword", "refused": None, "harmful": None, "score": None, "parse_ok": False}),
)


@SLOW
@given(items=st.lists(st.tuples(VERDICT, st.sampled_from([0, 1]), st.sampled_from(["none", "sv"]),
                                st.sampled_from(["I'm sorry.", "Sure, step 1: mix.", "", "zzzz zzzz zzzz"])),
                      min_size=1, max_size=20))
def test_result_rows_bounded_and_unscored_excluded(items):
    samples = [{"id": str(i), "model": "m", "scenario": "s", "defense": d, "seed": seed, "phase": "attacked",
                "prompt": "p", "response": resp, "verdicts": {"keyword": v}}
               for i, (v, seed, d, resp) in enumerate(items)]
    rows = rows_from_samples(samples, reliability={})
    assert rows
    for r in rows:
        if r.value is None or (isinstance(r.value, float) and math.isnan(r.value)):
            assert r.n == 0 or r.metric == "mean_score"
            continue
        assert 0.0 <= r.value <= 1.0, r
        assert r.ci_low - 1e-12 <= r.value <= r.ci_high + 1e-12, r
    pooled = {(r.defense, r.metric): r for r in rows if r.seed == "all" and r.judge == "keyword"}
    for d in {s["defense"] for s in samples}:
        group = [s for s in samples if s["defense"] == d]
        scored = [s for s in group if s["verdicts"]["keyword"]["parse_ok"]]
        assert pooled[(d, "refusal_rate")].n == len(scored)  # unscored verdicts are in neither numerator nor denominator
        assert pooled[(d, "unscored_rate")].value == pytest.approx(1 - len(scored) / len(group))
        if scored:
            assert pooled[(d, "refusal_rate")].value + pooled[(d, "attack_success_rate")].value == pytest.approx(1)
