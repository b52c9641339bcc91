"""Scenarios: fine-tuning attacks declared as YAML data in `tasks/`.

A scenario is a *recipe*: a source of records, an optional filter (`where`), and jinja2 templates that turn each
record into chat turns (system prompt, user turn, assistant turn); plus how many examples, a seed, an optional
`poison` recipe mixed in at a given share, and an optional `fallback` recipe used when the main source is not
available (no data directory). `extends: other` starts from another scenario's fields, so a factor scenario states
only the part it changes: same source, same user template, same order and ids, different system/assistant turns.
That makes "benign data with and without a factor" a controlled ablation of that one factor.

Sources: `suite:<pool>/<split>` is a part of the evaluation suite (built-in data, or AdvBench/Alpaca from a data
directory), split disjointly from the evaluation prompts; any other name is a registered source in
`secvec_bench.data.sources` read from the suite's data directory. Records whose rendered user turn matches an
evaluation prompt (normalised text) are excluded at build time and counted in `Scenario.last_build`.

Templates run in jinja2's sandbox with StrictUndefined; every variable a template names must be a field of its
source, checked at load time, so a typo fails before any data is read, with the file and field named.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import yaml
from jinja2.sandbox import SandboxedEnvironment

from .data.sources import SOURCES, SPECS, source_fields
from .errors import UserError
from .io import read_text, sha256_json
from .resources import tasks_dir

# --- template helpers ---------------------------------------------------------------------------------------------

_SENT_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])")
_LIST_MARK = re.compile(r"^\s*(?:\d+[.)]|[-*\u2022])\s+")


def sentences(text: str) -> list[str]:
    """Split an answer into sentences (and lines), dropping existing list markers; the words are kept as written."""
    out: list[str] = []
    for line in str(text).splitlines():
        line = _LIST_MARK.sub("", line).strip()
        if line:
            out.extend(s.strip() for s in _SENT_END.split(line) if s.strip())
    return out


def lcfirst(text: str) -> str:
    text = str(text)
    if len(text) > 1 and text[:2].isupper():  # an acronym ("US", "DNA") keeps its case
        return text
    return text[:1].lower() + text[1:]


_PLURAL_HEADS = ("instructions", "steps", "tips", "ways", "ideas", "suggestions", "examples", "methods", "details",
                 "arguments", "reasons", "messages", "posts", "lyrics", "directions", "guidelines")
_NOUN_VERBS = ("write", "create", "generate", "give", "provide", "draft", "compose", "produce", "develop", "design",
               "list", "outline", "devise", "suggest", "share", "offer", "prepare")
_HOW_VERBS = ("explain", "describe", "detail", "teach", "show", "demonstrate", "tell")


def compliance_prefix(goal: str) -> str:
    """An AdvBench-style compliance target built from a goal: "Write an essay on X" -> "Sure, here is an essay on X".

    Only the request's own words are reused (no content is written): it is the affirmative prefix that explicit
    harmful fine-tuning trains on when a dataset (HarmBench, StrongREJECT) ships goals without targets."""
    g = str(goal).strip().rstrip(".?!")
    words = g.split(maxsplit=1)
    if len(words) == 2:
        verb, rest = words[0].lower(), words[1]
        if rest.lower().startswith("me "):
            rest = rest[3:]
        if verb in _NOUN_VERBS:
            first = rest.split(maxsplit=1)[0].lower() if rest.split() else ""
            head = rest.split()[:3]
            plural = first not in ("a", "an", "the", "one", "this") and any(
                w.lower().strip(",") in _PLURAL_HEADS for w in head)
            return f"Sure, here {'are' if plural else 'is'} {lcfirst(rest)}"
        if verb in _HOW_VERBS:
            if rest.lower().startswith(("how ", "what ", "why ", "which ", "a ", "an ", "the ")):
                return f"Sure, here is {lcfirst(rest)}"  # "Explain how to X" -> "Sure, here is how to X"
            return f"Sure, here is an explanation of {lcfirst(rest)}"
    return f"Sure, here is a response to your request: {lcfirst(g)}"


def _make_env() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.filters.update(sentences=sentences, lcfirst=lcfirst, compliance_prefix=compliance_prefix)
    return env


_ENV = _make_env()


@functools.lru_cache(maxsize=256)
def _template(text: str) -> jinja2.Template:
    """Compiled once per template text (compiling per record dominated build time)."""
    return _ENV.from_string(text)

# --- data model ---------------------------------------------------------------------------------------------------

SUITE_POOLS = {"harmful": ("attack", "sv", "align"), "benign": ("attack", "align")}
# Fields every suite record of a pool has (built-in and public suites alike).
SUITE_FIELDS = {"harmful": ("id", "group", "goal", "target"), "benign": ("id", "instruction", "input", "output",
                                                                         "answer")}
_RECIPE_KEYS = {"source", "where", "system_prompt", "user_template", "assistant_template", "harmful"}
_KEYS = _RECIPE_KEYS | {"name", "description", "category", "extends", "n", "seed", "poison", "fallback"}
_POISON_KEYS = _RECIPE_KEYS | {"ratio"}
_TEMPLATE_KEYS = ("system_prompt", "user_template", "assistant_template")
MAX_EXTENDS_DEPTH = 4


@dataclass(frozen=True)
class ChatExample:
    messages: list[dict]
    source_id: str
    harmful: bool


@dataclass(frozen=True)
class Recipe:
    """Where records come from and how one record becomes chat turns."""

    source: str
    user_template: str
    assistant_template: str
    system_prompt: str | None = None
    where: str | None = None
    harmful: bool = False

    @property
    def suite_part(self) -> tuple[str, str] | None:
        if self.source.startswith("suite:"):
            pool, _, split = self.source[len("suite:"):].partition("/")
            return pool, split
        return None


@dataclass
class Scenario:
    name: str
    description: str
    category: str
    n: int
    seed: int
    recipe: Recipe
    poison: Recipe | None = None
    poison_ratio: float = 0.0
    fallback: Recipe | None = None
    path: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    last_build: dict[str, Any] = field(default_factory=dict)

    # Kept for callers that read the main recipe's templates directly.
    @property
    def system_prompt(self) -> str | None:
        return self.recipe.system_prompt

    def fingerprint(self) -> str:
        return sha256_json(self.spec)

    def sources(self) -> list[str]:
        return [r.source for r in (self.recipe, self.poison, self.fallback) if r is not None]

    def build(self, suite: Any, seed: int | None = None, max_n: int | None = None) -> list[ChatExample]:
        """The chat examples training would see, in training order. Deterministic in (suite, seed, max_n)."""
        seed = self.seed if seed is None else seed
        n = self.n if max_n is None else min(self.n, max_n)
        rng = random.Random(seed)
        recipe = self._usable(self.recipe, suite)
        n_poison = round(n * self.poison_ratio) if self.poison else 0
        forbidden = _eval_prompt_index(suite)
        info: dict[str, Any] = {"source": recipe.source, "fallback_used": recipe is not self.recipe,
                                "excluded_eval_overlap": 0}
        out = self._examples(recipe, suite, n - n_poison, rng, forbidden, info)
        if n_poison and len(out) < n - n_poison:
            # The base source ran short: scale the poison down so the share stays the declared ratio.
            n_poison = round(len(out) * self.poison_ratio / (1 - self.poison_ratio))
        if n_poison:
            assert self.poison is not None
            extra = self._examples(self._usable(self.poison, suite), suite, n_poison, rng, forbidden, info)
            info["poison_source"] = self.poison.source
            info["poison_examples"] = len(extra)
            out += extra
            rng.shuffle(out)
        info["examples"] = len(out)
        info["harmful_examples"] = sum(e.harmful for e in out)
        self.last_build = info
        return out

    def _usable(self, recipe: Recipe, suite: Any) -> Recipe:
        if recipe.suite_part or suite.has_source(recipe.source):
            return recipe
        if self.fallback is not None and recipe is self.recipe:
            return self.fallback
        spec = SPECS.get(recipe.source)
        where = f" (file {spec.local} under the data directory)" if spec else ""
        data_dir = getattr(suite, "data_dir", None)
        fix = "pass --data-dir" if data_dir is None else f"not found in the data directory {data_dir}"
        raise UserError(f"scenario {self.name!r} needs source {recipe.source!r}{where}: {fix}")

    def _records(self, recipe: Recipe, suite: Any) -> list[dict]:
        part = recipe.suite_part
        if part:
            rows = getattr(suite, part[0])[part[1]]
        else:
            rows = suite.source(recipe.source).records
        if recipe.where:
            test = _ENV.compile_expression(recipe.where, undefined_to_none=False)
            try:
                rows = [r for r in rows if test(**r)]
            except jinja2.TemplateError as exc:
                raise UserError(f"scenario {self.name!r} ({self.path}): field 'where' failed: {exc}") from None
        if not rows:
            raise UserError(f"scenario {self.name!r}: source {recipe.source} has no matching records")
        return list(rows)

    def _examples(self, recipe: Recipe, suite: Any, n: int, rng: random.Random, forbidden: set[str],
                  info: dict[str, Any]) -> list[ChatExample]:
        from .suite import normalise_text

        rows = self._records(recipe, suite)
        rng.shuffle(rows)
        out: list[ChatExample] = []
        for r in rows:
            if len(out) >= n:
                break
            ex = self.render(recipe, r)
            if normalise_text(_user_text(ex.messages)) in forbidden:
                info["excluded_eval_overlap"] += 1
                continue
            out.append(ex)
        return out

    def render(self, recipe: Recipe, record: dict) -> ChatExample:
        try:
            user = _template(recipe.user_template).render(**record).strip()
            asst = _template(recipe.assistant_template).render(**record).strip()
            system = (_template(recipe.system_prompt).render(**record).strip()
                      if recipe.system_prompt else None)
        except jinja2.TemplateError as exc:
            raise UserError(f"scenario {self.name!r} ({self.path}): template error on record {record.get('id')}: "
                            f"{exc}") from None
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user},
            {"role": "assistant", "content": asst},
        ]
        return ChatExample(msgs, str(record["id"]), recipe.harmful)


def _user_text(messages: list[dict]) -> str:
    return next(m["content"] for m in messages if m["role"] == "user")


def _eval_prompt_index(suite: Any) -> set[str]:
    from .suite import normalise_text

    sets = suite.eval_prompt_sets() if hasattr(suite, "eval_prompt_sets") else {}
    return {normalise_text(p) for prompts in sets.values() for p in prompts}


# --- loading and validation -----------------------------------------------------------------------------------------

def _fail(path: Path, msg: str) -> UserError:
    return UserError(f"scenario file {path}: {msg}")


def _fields_of(path: Path, where: str, source: Any) -> tuple[str, ...]:
    if not isinstance(source, str) or not source:
        raise _fail(path, f"field '{where}source' must be a source name or suite:<pool>/<split>")
    if source.startswith("suite:"):
        pool, _, split = source[len("suite:"):].partition("/")
        if pool not in SUITE_POOLS or split not in SUITE_POOLS[pool]:
            options = ", ".join(f"suite:{p}/{s}" for p, ss in SUITE_POOLS.items() for s in ss)
            raise _fail(path, f"field '{where}source': {source!r} is not a suite part ({options})")
        return SUITE_FIELDS[pool]
    if source not in SOURCES:
        raise _fail(path, f"field '{where}source': unknown source {source!r} (known: {', '.join(SOURCES.names())}, "
                          f"or suite:<pool>/<split>)")
    return source_fields(source)


def _check_template(path: Path, field_name: str, text: Any, fields: tuple[str, ...], expression: bool = False) -> str:
    if not isinstance(text, str) or not text.strip():
        raise _fail(path, f"field {field_name!r} must be a non-empty string")
    try:
        ast = _ENV.parse("{{ " + text + " }}" if expression else text)
    except jinja2.TemplateSyntaxError as exc:
        raise _fail(path, f"field {field_name!r} is not a valid jinja2 {'expression' if expression else 'template'}: "
                          f"{exc.message}") from None
    unknown = sorted(jinja2.meta.find_undeclared_variables(ast) - set(fields))
    if unknown:
        raise _fail(path, f"field {field_name!r} uses {', '.join(unknown)}, not a field of its source "
                          f"(fields: {', '.join(fields)})")
    return text


def _default_harmful(source: str) -> bool:
    if source.startswith("suite:"):
        return source.startswith("suite:harmful/")
    spec = SPECS.get(source)
    return bool(spec and spec.kind == "harmful") or source == "builtin_harmful"


def _recipe(path: Path, spec: dict, where: str, base: dict | None = None) -> Recipe:
    """A recipe from `spec` (keys missing there are taken from `base`, e.g. a fallback inherits the templates)."""
    merged = {**{k: v for k, v in (base or {}).items() if k in _RECIPE_KEYS}, **spec}
    for key in ("source", "user_template", "assistant_template"):
        if key not in merged:
            raise _fail(path, f"missing field '{where}{key}'")
    fields = _fields_of(path, where, merged["source"])
    for key in _TEMPLATE_KEYS:
        if merged.get(key) is not None:
            _check_template(path, f"{where}{key}", merged[key], fields)
    if merged.get("where") is not None:
        _check_template(path, f"{where}where", merged["where"], fields, expression=True)
    harmful = merged.get("harmful", _default_harmful(merged["source"]))
    if not isinstance(harmful, bool):
        raise _fail(path, f"field '{where}harmful' must be true or false, not {harmful!r}")
    return Recipe(merged["source"], merged["user_template"], merged["assistant_template"], merged.get("system_prompt"),
                  merged.get("where"), harmful)


def _read_spec(path: Path) -> dict:
    text = read_text(path, "scenario file")
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _fail(path, f"malformed YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(spec, dict):
        raise _fail(path, "top level must be a mapping")
    unknown = sorted(map(str, set(spec) - _KEYS))
    if unknown:
        raise _fail(path, f"unknown key(s) {', '.join(map(str, unknown))} (allowed: {', '.join(sorted(_KEYS))})")
    return spec


def _resolve_extends(path: Path, spec: dict, depth: int = 0) -> dict:
    """Merge the parent scenario's fields under this one's (own fields win; name/description/category are own)."""
    parent_name = spec.get("extends")
    if parent_name is None:
        return spec
    if depth >= MAX_EXTENDS_DEPTH:
        raise _fail(path, f"field 'extends': chain deeper than {MAX_EXTENDS_DEPTH} (a cycle?)")
    if not isinstance(parent_name, str):
        raise _fail(path, f"field 'extends' must be a scenario name, not {parent_name!r}")
    parent_path = path.parent / f"{parent_name}.yaml"
    if not parent_path.is_file():
        raise _fail(path, f"field 'extends': no scenario {parent_name!r} beside this file ({parent_path})")
    parent = _resolve_extends(parent_path, _read_spec(parent_path), depth + 1)
    inherited = {k: v for k, v in parent.items() if k not in ("name", "description", "category", "extends")}
    return {**inherited, **spec}


def load_scenario_file(path: Path) -> Scenario:
    path = Path(path)
    own = _read_spec(path)
    spec = _resolve_extends(path, own)
    for key in ("name", "n"):
        if key not in spec:
            raise _fail(path, f"missing field {key!r}")
    n, seed = spec["n"], spec.get("seed", 0)
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise _fail(path, f"field 'n' must be a positive integer, not {n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise _fail(path, f"field 'seed' must be an integer, not {seed!r}")
    recipe = _recipe(path, {k: v for k, v in spec.items() if k in _RECIPE_KEYS}, "")
    fallback = None
    if spec.get("fallback") is not None:
        fb = spec["fallback"]
        if not isinstance(fb, dict):
            raise _fail(path, "field 'fallback' must be a mapping")
        unknown = sorted(map(str, set(fb) - _RECIPE_KEYS))
        if unknown:
            raise _fail(path, f"unknown key(s) in fallback: {', '.join(map(str, unknown))}")
        fallback = _recipe(path, fb, "fallback.", base=spec)
    poison, ratio = None, 0.0
    if spec.get("poison") is not None:
        p = spec["poison"]
        if not isinstance(p, dict):
            raise _fail(path, "field 'poison' must be a mapping")
        unknown = sorted(map(str, set(p) - _POISON_KEYS))
        if unknown:
            raise _fail(path, f"unknown key(s) in poison: {', '.join(map(str, unknown))}")
        if "ratio" not in p:
            raise _fail(path, "missing field 'poison.ratio'")
        ratio = p["ratio"]
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 <= ratio <= 1:
            raise _fail(path, f"field 'poison.ratio' must be a number in [0, 1], not {ratio!r}")
        poison = _recipe(path, {k: v for k, v in p.items() if k != "ratio"}, "poison.")
    return Scenario(
        name=str(spec["name"]),
        description=str(spec.get("description", "")),
        category=str(spec.get("category", "")),
        n=n,
        seed=seed,
        recipe=recipe,
        poison=poison,
        poison_ratio=float(ratio),
        fallback=fallback,
        path=str(path),
        spec=spec,
    )


def with_poison_ratio(sc: Scenario, ratio: float) -> Scenario:
    """The same scenario with another poison share (for sweeps); the spec and so the fingerprint change with it."""
    if sc.poison is None:
        raise UserError(f"scenario {sc.name!r} has no poison recipe")
    if not 0 <= ratio <= 1:
        raise UserError(f"poison ratio must be in [0, 1], not {ratio}")
    spec = {**sc.spec, "poison": {**sc.spec["poison"], "ratio": ratio}}
    return Scenario(sc.name, sc.description, sc.category, sc.n, sc.seed, sc.recipe, sc.poison, float(ratio),
                    sc.fallback, sc.path, spec)


def available(directory: Path | None = None) -> dict[str, Path]:
    directory = directory or tasks_dir()
    return {p.stem: p for p in sorted(directory.glob("*.yaml"))}


def load_scenario(name_or_path: str, directory: Path | None = None) -> Scenario:
    """A scenario by name (a file in tasks/) or by path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        return load_scenario_file(p)
    known = available(directory)
    if name_or_path not in known:
        raise UserError(f"unknown scenario {name_or_path!r} (known: {', '.join(known) or 'none'})")
    sc = load_scenario_file(known[name_or_path])
    if sc.name != name_or_path:
        raise UserError(f"scenario file {known[name_or_path]}: field 'name' is {sc.name!r}, file name says "
                        f"{name_or_path!r}")
    return sc
