"""The threat-model card of an entry, read out of its run's provenance without assuming its layout.

The pipeline's provenance (config, data hashes, template hash, package versions, git commit, timings) grows as the
pipeline does, so the card does not hard-code paths into it. It searches: first the parts of the config that belong
to this entry's scenario and defense (a dict stored under a key equal to the name, or a dict whose `name` is it,
below a key mentioning "scenario" or "defense"), and the training config of its phase (attack or alignment), then
the whole provenance, for the facts a reader needs to judge a number (poison ratio, training budget, LoRA rank or
full fine-tuning, template hash...), and shows each fact with the path it was found at. The full provenance is
rendered as nested definition lists below, so nothing is hidden by a search that missed.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

from .table import Entry

MAX_DEPTH = 12
MAX_ITEMS = 400

# (label, keys searched everywhere, keys searched only in the entry's own scopes: scenario, defense, training config)
FACTS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("Poison ratio", ("poison_ratio", "poison_fraction", "harmful_ratio", "harmful_fraction", "poison_rate"),
     ("harmful_share",)),
    ("Training examples", ("n_train", "train_size", "num_train", "train_examples"), ("n", "examples", "n_examples")),
    ("Training steps", ("max_steps", "train_steps", "num_steps"), ("steps",)),
    ("Epochs", ("num_epochs",), ("epochs",)),
    ("Learning rate", ("learning_rate",), ("lr",)),
    ("Batch size", ("train_batch_size",), ("batch_size",)),
    ("Fine-tuning mode", ("finetune_mode", "train_mode"), ("mode", "method")),
    ("LoRA rank", ("lora_rank",), ("lora_r", "rank", "r")),
    ("Chat template sha256", ("chat_template_sha256", "template_sha256"), ()),
    ("Git commit", ("git_commit",), ()),
)
# The training config that produced the entry's weights: the attack for attacked models, alignment for the baseline.
TRAINING_SCOPES: dict[str, tuple[str, ...]] = {"aligned": ("align_cfg", "align", "alignment"), "sv_on": ()}
DEFAULT_TRAINING_SCOPES = ("attack_cfg", "attack", "train_cfg", "training")
SOURCE_HINTS = ("source", "origin", "dataset", "url", "revision", "sha256", "hash", "fingerprint")


@dataclass
class Fact:
    label: str
    value: str
    path: str


@dataclass
class Node:
    """A provenance value prepared for the recursive definition-list macro: text, or children."""

    key: str
    text: str | None = None
    children: list["Node"] = field(default_factory=list)


@dataclass
class Card:
    facts: list[Fact]
    sources: list[Fact]
    sample_counts: list[tuple[str, str, int]]
    scenario_config: list[Node]
    defense_config: list[Node]
    provenance: list[Node]


def _scalar_text(v: Any) -> str | None:
    if v is None or isinstance(v, (str, int, float, bool)):
        return json.dumps(v) if not isinstance(v, str) else v
    if isinstance(v, list) and all(x is None or isinstance(x, (str, int, float, bool)) for x in v):
        return ", ".join(x if isinstance(x, str) else json.dumps(x) for x in v) if v else "[]"
    return None


def walk(obj: Any, path: str = "", depth: int = 0) -> Iterator[tuple[str, str, Any]]:
    """(path, key, value) for every dict item below obj, breadth-first so shallower matches come first."""
    queue: list[tuple[str, Any, int]] = [(path, obj, depth)]
    while queue:
        p, o, d = queue.pop(0)
        if d > MAX_DEPTH:
            continue
        items = o.items() if isinstance(o, dict) else enumerate(o) if isinstance(o, list) else ()
        for k, v in items:
            sub = f"{p}.{k}" if p else str(k)
            if isinstance(k, str):
                yield sub, k, v
            if isinstance(v, (dict, list)):
                queue.append((sub, v, d + 1))


def subtrees(obj: Any, name: str, section: str) -> list[tuple[str, dict]]:
    """Dicts that describe `name` inside a `section` (a path containing e.g. "scenario"): stored under a key equal to
    the name, or carrying `name: <name>`. The section keeps defense "none" from passing for scenario "none"."""
    if not name:
        return []
    out = []
    for p, k, v in walk(obj):
        if isinstance(v, dict) and (k == name or v.get("name") == name) and section in p.lower():
            out.append((p, v))
    return out


def find_fact(scopes: list[tuple[str, Any]], keys: tuple[str, ...]) -> tuple[str, str] | None:
    for prefix, scope in scopes:
        for p, k, v in walk(scope, prefix):
            if k in keys:
                text = _scalar_text(v)
                if text is not None:
                    return p, text
    return None


def to_nodes(obj: Any, depth: int = 0, budget: list[int] | None = None) -> list[Node]:
    """Nested dicts/lists as Nodes, capped in depth and size so a huge provenance cannot blow up the page."""
    budget = budget if budget is not None else [MAX_ITEMS]
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    nodes = []
    for k, v in items:
        if budget[0] <= 0:
            nodes.append(Node(key="…", text="(truncated)"))
            break
        budget[0] -= 1
        key = str(k) if isinstance(obj, dict) else f"[{k}]"
        text = _scalar_text(v)
        if text is not None:
            nodes.append(Node(key=key, text=text))
        elif depth >= MAX_DEPTH:
            nodes.append(Node(key=key, text=json.dumps(v, sort_keys=True)[:200]))
        else:
            nodes.append(Node(key=key, children=to_nodes(v, depth + 1, budget)))
    return nodes


def training_scopes(prov: dict[str, Any], phase: str) -> list[tuple[str, dict]]:
    names = TRAINING_SCOPES.get(phase, DEFAULT_TRAINING_SCOPES)
    return [(p, v) for p, k, v in walk(prov) if k in names and isinstance(v, dict)]


def source_facts(prov: dict[str, Any], limit: int = 100) -> list[Fact]:
    """Leaves whose key names a source, origin, hash or fingerprint; a dict under such a key (e.g. `hashes`) gives
    one fact per scalar child."""
    out: list[Fact] = []
    for p, k, v in walk(prov):
        if not any(h in k.lower() for h in SOURCE_HINTS):
            continue
        text = _scalar_text(v)
        if text is not None:
            out.append(Fact(k, text, p))
        elif isinstance(v, dict):
            out.extend(Fact(str(ck), t, f"{p}.{ck}") for ck, cv in v.items() if (t := _scalar_text(cv)) is not None)
        if len(out) >= limit:
            break
    return out[:limit]


def build_card(entry: Entry) -> Card:
    prov = entry.run.provenance
    scen = subtrees(prov, entry.key.scenario, "scenario")
    dfn = subtrees(prov, entry.key.defense, "defense")
    own: list[tuple[str, Any]] = scen + dfn + training_scopes(prov, entry.key.phase)
    facts = []
    for label, keys, narrow in FACTS:
        found = find_fact(own, keys + narrow) or find_fact([("", prov)], keys)
        if found:
            facts.append(Fact(label, found[1], found[0]))
    sources = source_facts(prov)
    counts = Counter((str(s.get("prompt_set", "")), str(s.get("seed", ""))) for s in entry.samples)
    return Card(
        facts=facts,
        sources=sources,
        sample_counts=[(ps, seed, n) for (ps, seed), n in sorted(counts.items())],
        scenario_config=to_nodes(scen[0][1]) if scen else [],
        defense_config=to_nodes(dfn[0][1]) if dfn else [],
        provenance=to_nodes(prov),
    )
