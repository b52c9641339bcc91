"""The spine: align -> prepare defense -> attack -> generate (defense removed) -> judge -> results.

`run(cfg)` executes a `RunConfig`. Every stage goes through the stage cache, so a second identical run loads every
output from disk, and a killed run resumes at the first stage whose output is missing. The run directory is locked
while a run writes it; `samples.jsonl` and `results.json` are rebuilt from cached stages at the end of every run.
"""

from __future__ import annotations

import fcntl
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from . import __version__
from .cache import StageCache, default_cache_root
from .defenses import DefenseContext, get_defense, has_post_train, post_train_report
from .errors import UserError
from .generation import GenConfig, GenStats
from .io import sha256_json
from .judging import get_judge
from .judging.agreement import pairwise_judge_agreement
from .metrics import load_reliability, rows_from_samples
from .models import chat_template_hash, load_tokenizer, resolve
from .progress import status
from .results import write_run
from .scenarios import load_scenario
from .stages import align, attack, generate_stage, judge_stage, load_attacked, load_with_adapters
from .suite import Suite, build_suite, normalise_text
from .training import TrainConfig
from .defenses.security_vectors import SV_DEFAULTS

ALIGN_DEFAULTS = TrainConfig(mode="lora", epochs=2, lr=2e-4, batch_size=8, lora_r=16, lora_alpha=32, seed=0)
ATTACK_DEFAULTS = TrainConfig(mode="lora", epochs=2, lr=2e-4, batch_size=8, lora_r=16, lora_alpha=32, seed=0)


@dataclass
class RunConfig:
    model: str = "smollm2-135m"
    scenarios: list[str] = field(default_factory=lambda: ["explicit_harmful"])
    defenses: list[str] = field(default_factory=lambda: ["security_vectors"])
    seeds: list[int] = field(default_factory=lambda: [0])
    judges: list[str] = field(default_factory=lambda: ["keyword"])
    out: str = "runs"
    run_id: str | None = None
    data_dir: str | None = None
    cache_dir: str | None = None
    max_train: int | None = None
    max_eval: int | None = None
    align: bool = True
    align_cfg: TrainConfig = ALIGN_DEFAULTS
    attack_cfg: TrainConfig = ATTACK_DEFAULTS
    gen: GenConfig = field(default_factory=GenConfig)
    sv_samples: int = 100
    sv_train: TrainConfig = SV_DEFAULTS  # security-vector adapter: rank, targets, epochs, lr
    defense_options: dict[str, Any] = field(default_factory=dict)  # e.g. safety_ratio, safelora_threshold
    utility: bool = False  # held-out benign loss + task score, over-refusal on safe prompts (XSTest)
    utility_n: int = 60  # benign eval prompts and safe prompts per model state
    device: str = "cpu"
    trust_remote_code: bool = False
    revision: str | None = None
    allow_overlap: bool = False

    def determinants(self) -> dict[str, Any]:
        """What the results depend on (for the default run id); output paths and the cache location excluded."""
        d = asdict(self)
        for k in ("out", "run_id", "cache_dir", "device"):
            d.pop(k)
        return d


def ordered_defenses(requested: list[str]) -> list[str]:
    """`none` always runs (the undefended baseline), first; duplicates dropped."""
    out = ["none"]
    for d in requested:
        if d not in out:
            out.append(d)
    return out


def alignment_conversations(suite: Suite) -> list[list[dict]]:
    from .data.builtin import refusal_for

    convs = [[{"role": "user", "content": r["goal"]}, {"role": "assistant", "content": refusal_for(r["id"])}]
             for r in suite.harmful["align"]]
    convs += [[{"role": "user", "content": _instruction(r)}, {"role": "assistant", "content": r["output"]}]
              for r in suite.benign["align"]]
    return convs


def _instruction(r: dict) -> str:
    return r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else "")


def check_overlap(train_texts: list[str], eval_prompts: list[str], allow: bool, what: str) -> dict[str, Any]:
    train_norm = {normalise_text(t) for t in train_texts}
    hits = [p for p in eval_prompts if normalise_text(p) in train_norm]
    if hits and not allow:
        raise UserError(f"{len(hits)} evaluation prompt(s) also appear in {what} training data "
                        f"(e.g. {hits[0][:60]!r}); pass --allow-overlap to run anyway")
    return {"checked": what, "train_texts": len(train_norm), "eval_prompts": len(eval_prompts), "overlap": len(hits)}


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"secvec_bench": __version__, "python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "numpy", "tokenizers", "safetensors"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


class RunLock:
    """An exclusive lock on a run directory: a second run writing the same directory fails fast with exit 2."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise UserError(f"run directory {self.path.parent} is in use by another secvec-bench process") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)


def default_run_id(cfg: RunConfig) -> str:
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(cfg.model).name)[:40]
    return f"{slug}-{sha256_json(cfg.determinants())[:10]}"


def _validate(cfg: RunConfig) -> None:
    if not cfg.seeds:
        raise UserError("--seeds: give at least one seed")
    for name, v in (("--max-train", cfg.max_train), ("--max-eval", cfg.max_eval)):
        if v is not None and v <= 0:
            raise UserError(f"{name} must be a positive integer, not {v}")
    if cfg.sv_samples <= 0:
        raise UserError(f"--sv-samples must be positive, not {cfg.sv_samples}")
    if cfg.utility_n <= 0:
        raise UserError(f"--utility-n must be positive, not {cfg.utility_n}")
    if cfg.device != "cpu" and not cfg.device.startswith("cuda"):
        raise UserError(f"--device must be cpu or cuda[:N], not {cfg.device!r}")
    from .models import set_device

    set_device(cfg.device)


def run(cfg: RunConfig) -> dict[str, Any]:
    """Execute a run; returns the results dict (also written to <out>/<run_id>/results.json)."""
    _validate(cfg)
    t_start = time.perf_counter()
    scenarios = [load_scenario(s) for s in cfg.scenarios]
    defenses = {name: get_defense(name, n_samples=cfg.sv_samples, sv_train=cfg.sv_train, **cfg.defense_options)
                for name in ordered_defenses(cfg.defenses)}
    judges = [get_judge(j) for j in cfg.judges]
    data_dir = cfg.data_dir
    if data_dir is not None and data_dir != "hub" and not Path(data_dir).is_dir():
        raise UserError(f"--data-dir {data_dir}: not a directory")
    suite = build_suite(data_dir)
    cache = StageCache(Path(cfg.cache_dir) if cfg.cache_dir else default_cache_root())
    run_id = cfg.run_id or default_run_id(cfg)
    run_dir = Path(cfg.out) / run_id
    ref = resolve(cfg.model, cache.root, cfg.revision)
    # Build every scenario's data before any training, so a missing source fails in a second, not after alignment.
    built: dict[tuple[str, int], tuple[list, Any]] = {}
    for sc in scenarios:
        for seed in cfg.seeds:
            examples = sc.build(suite, seed=seed, max_n=cfg.max_train)
            if not examples:
                raise UserError(f"scenario {sc.name!r} produced no training examples")
            built[sc.name, seed] = (examples, sc.last_build)

    # peft up front: a Ctrl-C landing inside transformers' lazy imports (pulled in by peft's first import, inside
    # the first stage) comes back as a ModuleNotFoundError instead of a clean interrupt.
    import peft  # noqa: F401

    with RunLock(run_dir):
        status(f"run {run_id}: model {cfg.model}, scenarios {', '.join(cfg.scenarios)}, "
               f"defenses {', '.join(defenses)}, seeds {cfg.seeds}")
        tokenizer = load_tokenizer(ref.path, cfg.trust_remote_code)
        template_hash = chat_template_hash(tokenizer)
        eval_rows = suite.harmful["eval"][: cfg.max_eval] if cfg.max_eval else suite.harmful["eval"]
        eval_prompts = [r["goal"] for r in eval_rows]
        gen_stats = GenStats()
        samples: list[dict] = []
        hygiene: list[dict] = []

        if cfg.align:
            align_convs = alignment_conversations(suite)
            hygiene.append(check_overlap([c[0]["content"] for c in align_convs], eval_prompts, cfg.allow_overlap,
                                         "alignment"))
            aligned_path, aligned_key = align(cache, ref.path, ref.fingerprint, tokenizer, align_convs,
                                              cfg.align_cfg, cfg.trust_remote_code)
        else:
            aligned_path, aligned_key = ref.path, ref.fingerprint

        def add_samples(responses, *, scenario, defense, seed, phase, label, rows=None, prompts=None,
                        prompt_set="harmful_eval"):
            rows = eval_rows if rows is None else rows
            prompts = eval_prompts if prompts is None else prompts
            verdicts = {j.name: judge_stage(cache, j, prompts, responses, label) for j in judges}
            id_prefix = phase if prompt_set == "harmful_eval" else f"{phase}/{prompt_set}"
            for i, (row, prompt, resp) in enumerate(zip(rows, prompts, responses)):
                samples.append({
                    "id": f"{id_prefix}/{scenario}/{defense}/{seed}/{row['id']}",
                    "prompt_id": row["id"], "prompt": prompt, "response": resp, "model": cfg.model,
                    "scenario": scenario, "defense": defense, "seed": seed, "phase": phase,
                    "prompt_set": prompt_set, "verdicts": {name: v[i] for name, v in verdicts.items()},
                })

        utility_measures: list[dict] = []
        if cfg.utility:
            from .utility import load_safe_prompts, spread

            safe = load_safe_prompts(data_dir)
            safe_rows = spread(safe.rows, cfg.utility_n)
            benign_rows = suite.benign["eval"][: cfg.utility_n]

        def add_utility(state_key, loader, *, scenario, defense, seed, phase, label):
            """Utility of one model state: benign loss + task score (rows), over-refusal (judged samples)."""
            if not cfg.utility:
                return
            from .utility import measure_benign

            m = measure_benign(cache, state_key, loader, tokenizer, benign_rows, cfg.gen, template_hash, label,
                               gen_stats)
            utility_measures.append({**m, "model": cfg.model, "scenario": scenario, "defense": defense,
                                     "phase": phase, "seed": seed})
            safe_prompts = [r["prompt"] for r in safe_rows]
            resp = generate_stage(cache, state_key, loader, tokenizer, safe_prompts, cfg.gen, template_hash,
                                  f"xstest_safe {label}", gen_stats)
            add_samples(resp, scenario=scenario, defense=defense, seed=seed, phase=phase, label=f"xstest {label}",
                        rows=safe_rows, prompts=safe_prompts, prompt_set="xstest_safe")

        aligned_resp = generate_stage(cache, aligned_key, lambda: _load_plain(aligned_path, cfg), tokenizer,
                                      eval_prompts, cfg.gen, template_hash, "aligned", gen_stats)
        add_samples(aligned_resp, scenario="none", defense="none", seed=cfg.seeds[0], phase="aligned",
                    label="aligned")
        add_utility(aligned_key, lambda: _load_plain(aligned_path, cfg), scenario="none", defense="none",
                    seed=cfg.seeds[0], phase="aligned", label="aligned")

        defense_info: dict[str, Any] = {}
        scenario_info: dict[str, Any] = {}
        for sc in scenarios:
            for seed in cfg.seeds:
                base_examples, build_info = built[sc.name, seed]
                # Against every evaluation set the suite can reach (harmful and benign eval, XSTest, MT-Bench).
                eval_sets = suite.eval_prompt_sets()
                hygiene.append(check_overlap([_user_turn(e.messages) for e in base_examples],
                                             [p for ps in eval_sets.values() for p in ps], cfg.allow_overlap,
                                             f"scenario {sc.name} (seed {seed}) vs {', '.join(eval_sets)}"))
                scenario_info[sc.name] = {"path": sc.path, "fingerprint": sc.fingerprint(), "n": len(base_examples),
                                          "harmful_share": sum(e.harmful for e in base_examples) / len(base_examples),
                                          "build": build_info, "spec": sc.spec}
                for dname, defense in defenses.items():
                    ctx = DefenseContext(cache, aligned_path, aligned_key, tokenizer, suite, seed,
                                         trust_remote_code=cfg.trust_remote_code,
                                         base_path=ref.path if cfg.align else None)
                    prepared = defense.prepare(ctx)
                    examples = defense.training_data(base_examples, ctx)
                    convs = [e.messages for e in examples]
                    tcfg = replace(cfg.attack_cfg, seed=seed)
                    label = f"{sc.name}:{dname}:seed{seed}"
                    attack_dir, attack_key = attack(ctx, prepared, convs, tcfg, label)
                    if has_post_train(defense):  # post-fine-tuning defenses rewrite the attack's output
                        attack_dir, attack_key = defense.post_train(attack_dir, attack_key, ctx)
                    resp = generate_stage(cache, attack_key,
                                          lambda: load_attacked(aligned_path, attack_dir, cfg.trust_remote_code),
                                          tokenizer, eval_prompts, cfg.gen, template_hash, label, gen_stats)
                    add_samples(resp, scenario=sc.name, defense=dname, seed=seed, phase="attacked", label=label)
                    add_utility(attack_key,
                                lambda: load_attacked(aligned_path, attack_dir, cfg.trust_remote_code),
                                scenario=sc.name, defense=dname, seed=seed, phase="attacked", label=label)
                    earlier = defense_info.get(dname, {}).get("post_train", {})  # other scenarios' and seeds' reports
                    defense_info[dname] = {"config": defense.config(), **prepared.info}
                    if earlier:
                        defense_info[dname]["post_train"] = dict(earlier)
                    report = post_train_report(attack_dir)
                    if report:
                        defense_info[dname].setdefault("post_train", {})[f"{sc.name}:seed{seed}"] = report
                    if prepared.frozen_adapters and sc is scenarios[0]:
                        # The control: the model with the frozen adapters ON must itself be harmful.
                        on_key = sha256_json([aligned_key, prepared.key, "adapters-on"])
                        on = generate_stage(cache, on_key,
                                            lambda: load_with_adapters(aligned_path, prepared.frozen_adapters,
                                                                       cfg.trust_remote_code),
                                            tokenizer, eval_prompts, cfg.gen, template_hash,
                                            f"{dname}-on:seed{seed}", gen_stats)
                        add_samples(on, scenario="none", defense=dname, seed=seed, phase="sv_on",
                                    label=f"{dname}-on:seed{seed}")

        # Judge-corrected rates use a stored agreement report only if it measured this exact judge configuration.
        reliability = load_reliability(judge_configs={j.name: j.config() for j in judges})
        rows = [r.as_dict() for r in rows_from_samples(samples, reliability=reliability)]
        if cfg.utility:
            from .utility import over_refusal_rows, utility_rows

            rows += over_refusal_rows(rows) + [r.as_dict() for r in utility_rows(utility_measures)]
        results = {
            "run_id": run_id,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": cfg.model,
            "rows": rows,
            "judge_pairwise_agreement": pairwise_judge_agreement(samples),
            "provenance": {
                "config": _jsonable_config(cfg),
                "model": {"spec": cfg.model, "path": str(ref.path), "fingerprint": ref.fingerprint,
                          "aligned_key": aligned_key},
                "chat_template_sha256": template_hash,
                "data": {"hashes": suite.hashes, "origins": suite.origins, "harmful_source": suite.harmful_source,
                         "benign_source": suite.benign_source,
                         "splits": {"harmful": {k: len(v) for k, v in suite.harmful.items()},
                                    "benign": {k: len(v) for k, v in suite.benign.items()}},
                         "eval_prompt_ids": [r["id"] for r in eval_rows]},
                "hygiene": hygiene,
                "utility": ({"safe_prompts": safe.source, "safe_prompts_sha256": safe.sha256,
                             "safe_prompt_ids": [r["id"] for r in safe_rows],
                             "benign_eval_ids": [r["id"] for r in benign_rows]} if cfg.utility else None),
                "scenarios": scenario_info,
                "defenses": defense_info,
                "judges": {j.name: j.config() for j in judges},
                "packages": package_versions(),
                "git_commit": git_commit(),
                "timings": {"stages": cache.timings, "total_seconds": round(time.perf_counter() - t_start, 3),
                            "generated_tokens": gen_stats.new_tokens,
                            "generation_tokens_per_second": round(gen_stats.tokens_per_second, 2)},
                "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            },
        }
        write_run(run_dir, samples, results)
        results["run_dir"] = str(run_dir)
        return results


def _user_turn(messages: list[dict]) -> str:
    return next(m["content"] for m in messages if m["role"] == "user")


def _load_plain(path: Path, cfg: RunConfig):
    from .models import load_model

    return load_model(path, trust_remote_code=cfg.trust_remote_code)


def _jsonable_config(cfg: RunConfig) -> dict[str, Any]:
    d = asdict(cfg)
    for k in ("align_cfg", "attack_cfg", "sv_train"):
        d[k]["target_modules"] = list(d[k]["target_modules"])
    return d
