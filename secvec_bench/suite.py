"""The evaluation suite: one harmful pool and one benign pool, split once into disjoint parts.

Harmful: `align` (refusal training), `sv` (security-vector training), `attack` (the attacker's data), `eval`
(held-out prompts). Benign: `align`, `attack`, `eval`. Splits are by `group` (a topic in the built-in data, the item in
AdvBench), made with a fixed split seed that does not change with the run seed, so every seed and every defense sees
the same evaluation prompts; `check_disjoint` asserts no prompt text or group crosses a split.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import UserError
from .data.sources import EVAL_PROMPT_FIELDS, SourceData, load_source, source_available

HARMFUL_SPLITS = ("eval", "sv", "attack", "align")
BENIGN_SPLITS = ("eval", "attack", "align")


@dataclass(frozen=True)
class SuiteSizes:
    """Records per split; a split gets whole groups until it holds at least this many (or the pool runs out)."""

    harmful_eval: int
    harmful_sv: int
    harmful_attack: int
    harmful_align: int
    benign_eval: int
    benign_attack: int
    benign_align: int

    def as_dict(self) -> dict:
        return asdict(self)


# The measured recipe on AdvBench (520 goals): 60 eval, 100 SV, 210 attack, 150 align.
DATA_DIR_SIZES = SuiteSizes(60, 100, 210, 150, 100, 500, 150)
# Built-in: 48 topics x 8 templates; whole topics per split.
BUILTIN_SIZES = SuiteSizes(64, 64, 112, 144, 50, 64, 100)
SPLIT_SEED = 20231104


@dataclass
class Suite:
    harmful_source: str
    benign_source: str
    harmful: dict[str, list[dict]]
    benign: dict[str, list[dict]]
    hashes: dict[str, str] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    data_dir: str | None = None  # where scenario sources beyond the two pools are read from (None: built-in only)
    _loaded: dict[str, SourceData] = field(default_factory=dict, repr=False)

    def source(self, name: str) -> SourceData:
        """A named source, read once per suite; its file hash and origin join `hashes`/`origins` (provenance)."""
        if name not in self._loaded:
            data = load_source(name, self.data_dir)
            self._loaded[name] = data
            self.hashes[name] = data.sha256
            self.origins[name] = data.origin
        return self._loaded[name]

    def has_source(self, name: str) -> bool:
        return name in self._loaded or source_available(name, self.data_dir)

    def eval_prompt_sets(self) -> dict[str, list[str]]:
        """Every evaluation prompt set this suite can reach: the held-out harmful and benign splits, plus XSTest and
        MT-Bench when the data directory holds them. Training data must not contain any of these prompts."""
        sets = {"harmful_eval": [r["goal"] for r in self.harmful["eval"]],
                "benign_eval": [_instruction(r) for r in self.benign["eval"]]}
        for name, key in EVAL_PROMPT_FIELDS.items():
            if self.data_dir is not None and self.has_source(name):
                sets[name] = [r[key] for r in self.source(name).records]
        return sets

    def check_disjoint(self) -> None:
        for pool_name, pool, key in (("harmful", self.harmful, "goal"), ("benign", self.benign, "instruction")):
            seen_text: dict[str, str] = {}
            seen_group: dict[str, str] = {}
            for split, rows in pool.items():
                for r in rows:
                    t = normalise_text(r[key])
                    g = r.get("group", r["id"])
                    for seen, k in ((seen_text, t), (seen_group, g)):
                        if k in seen and seen[k] != split:
                            raise AssertionError(f"{pool_name} splits {seen[k]} and {split} overlap on {k!r}")
                        seen[k] = split


def _instruction(r: dict) -> str:
    return r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else "")


_NORM = re.compile(r"[^a-z0-9]+")


def normalise_text(text: str) -> str:
    return _NORM.sub(" ", text.lower()).strip()


def split_by_group(rows: list[dict], splits: tuple[str, ...], sizes: dict[str, int], seed: int) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r.get("group", r["id"]), []).append(r)
    names = sorted(groups)
    random.Random(seed).shuffle(names)
    out: dict[str, list[dict]] = {s: [] for s in splits}
    it = iter(names)
    for s in splits:
        while len(out[s]) < sizes[s]:
            g = next(it, None)
            if g is None:
                break
            out[s].extend(groups[g])
    for s in splits:
        if not out[s]:
            raise UserError(f"data too small: split {s!r} is empty ({len(rows)} records for {len(splits)} splits)")
    return out


def build_suite(data_dir: Path | str | None) -> Suite:
    """Built-in data without a data directory; AdvBench + Alpaca from one."""
    if data_dir is None:
        harm, ben, sizes = load_source("builtin_harmful", None), load_source("builtin_benign", None), BUILTIN_SIZES
    else:
        harm, ben, sizes = load_source("advbench", data_dir), load_source("alpaca", data_dir), DATA_DIR_SIZES
    return make_suite(harm, ben, sizes, None if data_dir is None else str(data_dir))


def make_suite(harm: SourceData, ben: SourceData, sizes: SuiteSizes, data_dir: str | None = None) -> Suite:
    hs = split_by_group(harm.records, HARMFUL_SPLITS, {s: getattr(sizes, f"harmful_{s}") for s in HARMFUL_SPLITS},
                        SPLIT_SEED)
    bs = split_by_group(ben.records, BENIGN_SPLITS, {s: getattr(sizes, f"benign_{s}") for s in BENIGN_SPLITS},
                        SPLIT_SEED)
    suite = Suite(harm.name, ben.name, hs, bs, {harm.name: harm.sha256, ben.name: ben.sha256},
                  {harm.name: harm.origin, ben.name: ben.origin}, data_dir)
    suite.check_disjoint()
    return suite
