"""Scenarios: fine-tuning attacks declared as YAML data in `tasks/`.

A scenario names the pool and split its examples come from, how many, the seed, an optional system prompt, and jinja2
templates that turn each record into a user turn and an assistant turn. An optional `poison` block mixes a share of
examples from a second pool (e.g. harmful pairs into benign data). Templates run in jinja2's sandbox with
StrictUndefined, so a template naming a missing field fails at load time with the file and field named.

The same base records with a different template = a controlled ablation of one factor.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2.sandbox import SandboxedEnvironment

from .errors import UserError
from .io import read_text, sha256_json
from .resources import tasks_dir

_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)

POOLS = ("harmful", "benign")
SPLITS = {"harmful": ("attack", "sv", "align"), "benign": ("attack", "align")}
_KEYS = {"name", "description", "category", "pool", "split", "n", "seed", "system_prompt", "user_template",
         "assistant_template", "poison"}
_POISON_KEYS = {"pool", "split", "ratio", "user_template", "assistant_template"}


@dataclass(frozen=True)
class ChatExample:
    messages: list[dict]
    source_id: str
    harmful: bool


@dataclass
class Scenario:
    name: str
    description: str
    category: str
    pool: str
    split: str
    n: int
    seed: int
    system_prompt: str | None
    user_template: str
    assistant_template: str
    poison: dict[str, Any] | None = None
    path: str = ""
    spec: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        return sha256_json(self.spec)

    def build(self, suite: Any, seed: int | None = None, max_n: int | None = None) -> list[ChatExample]:
        """The chat examples training would see, in training order. Deterministic in (suite, seed)."""
        seed = self.seed if seed is None else seed
        n = self.n if max_n is None else min(self.n, max_n)
        rng = random.Random(seed)
        n_poison = 0
        if self.poison:
            n_poison = round(n * float(self.poison["ratio"]))
        base = self._take(suite, self.pool, self.split, n - n_poison, rng)
        out = [self._render(r, self.user_template, self.assistant_template, self.pool == "harmful") for r in base]
        if n_poison:
            p = self.poison
            extra = self._take(suite, p["pool"], p["split"], n_poison, rng)
            out += [self._render(r, p["user_template"], p["assistant_template"], p["pool"] == "harmful") for r in extra]
            rng.shuffle(out)
        return out

    def _take(self, suite: Any, pool: str, split: str, n: int, rng: random.Random) -> list[dict]:
        rows = list(getattr(suite, pool)[split])
        if not rows:
            raise UserError(f"scenario {self.name!r}: {pool}/{split} has no data")
        rng.shuffle(rows)
        return rows[:n]

    def _render(self, record: dict, user_t: str, asst_t: str, harmful: bool) -> ChatExample:
        try:
            user = _ENV.from_string(user_t).render(**record).strip()
            asst = _ENV.from_string(asst_t).render(**record).strip()
            system = _ENV.from_string(self.system_prompt).render(**record).strip() if self.system_prompt else None
        except jinja2.TemplateError as exc:
            raise UserError(f"scenario {self.name!r} ({self.path}): template error on record {record.get('id')}: "
                            f"{exc}") from None
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user},
            {"role": "assistant", "content": asst},
        ]
        return ChatExample(msgs, str(record["id"]), harmful)


def _fail(path: Path, msg: str) -> UserError:
    return UserError(f"scenario file {path}: {msg}")


def _check_template(path: Path, field_name: str, text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise _fail(path, f"field {field_name!r} must be a non-empty string")
    try:
        _ENV.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise _fail(path, f"field {field_name!r} is not a valid jinja2 template: {exc.message}") from None
    return text


def _check_pool(path: Path, where: str, pool: Any, split: Any) -> None:
    if pool not in POOLS:
        raise _fail(path, f"{where}pool must be one of {', '.join(POOLS)}, not {pool!r}")
    if split not in SPLITS[pool]:
        raise _fail(path, f"{where}split must be one of {', '.join(SPLITS[pool])} for pool {pool}, not {split!r}")


def load_scenario_file(path: Path) -> Scenario:
    text = read_text(path, "scenario file")
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _fail(path, f"malformed YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(spec, dict):
        raise _fail(path, "top level must be a mapping")
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise _fail(path, f"unknown key(s) {', '.join(unknown)}")
    for key in ("name", "pool", "split", "n", "user_template", "assistant_template"):
        if key not in spec:
            raise _fail(path, f"missing field {key!r}")
    _check_pool(path, "", spec["pool"], spec["split"])
    n, seed = spec["n"], spec.get("seed", 0)
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise _fail(path, f"field 'n' must be a positive integer, not {n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise _fail(path, f"field 'seed' must be an integer, not {seed!r}")
    _check_template(path, "user_template", spec["user_template"])
    _check_template(path, "assistant_template", spec["assistant_template"])
    if spec.get("system_prompt") is not None:
        _check_template(path, "system_prompt", spec["system_prompt"])
    poison = spec.get("poison")
    if poison is not None:
        if not isinstance(poison, dict):
            raise _fail(path, "field 'poison' must be a mapping")
        unknown = sorted(set(poison) - _POISON_KEYS)
        if unknown:
            raise _fail(path, f"unknown key(s) in poison: {', '.join(unknown)}")
        for key in _POISON_KEYS:
            if key not in poison:
                raise _fail(path, f"missing field 'poison.{key}'")
        _check_pool(path, "poison.", poison["pool"], poison["split"])
        r = poison["ratio"]
        if not isinstance(r, (int, float)) or isinstance(r, bool) or not 0 <= r <= 1:
            raise _fail(path, f"field 'poison.ratio' must be a number in [0, 1], not {r!r}")
        _check_template(path, "poison.user_template", poison["user_template"])
        _check_template(path, "poison.assistant_template", poison["assistant_template"])
    return Scenario(
        name=str(spec["name"]),
        description=str(spec.get("description", "")),
        category=str(spec.get("category", "")),
        pool=spec["pool"],
        split=spec["split"],
        n=n,
        seed=seed,
        system_prompt=spec.get("system_prompt"),
        user_template=spec["user_template"],
        assistant_template=spec["assistant_template"],
        poison=poison,
        path=str(path),
        spec=spec,
    )


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
