"""Content-addressed stage cache.

Every stage output (converted model, aligned model, adapters, generations, verdicts) is stored under
`<cache>/<stage>/<key>` where the key hashes everything that determines the output. A folder is built in a temporary
sibling and renamed into place only when complete, with a `MANIFEST.json` listing each file's sha256; a folder whose
files no longer match (a corrupted or half-copied cache) is discarded and rebuilt, never trusted.

Several processes may share one cache (a sweep's jobs): a folder stage is built under an exclusive lock on
`<cache>/.locks/<stage>-<key>.lock`, so a second process that needs the same entry waits for it instead of training
it again and replacing the folder under the first one's feet.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .io import atomic_write_json, read_json, sha256_file, sha256_json
from .progress import status

# Bump a stage's version when its code changes what it produces, so old cache entries stop matching.
STAGE_VERSIONS = {
    # 2: LoRA init seeded (reproducible across processes); 3: fused LoRA op, blockwise head loss and (bf16 on the
    # CPU) grouped attention in training: the same arithmetic in another float order, so not bit-identical to 2
    "align": 3,
    "adapter": 3,
    "attack": 3,
    "generate": 1,
    "judge": 1,
}
MANIFEST = "MANIFEST.json"


def default_cache_root() -> Path:
    env = os.environ.get("SECVEC_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "secvec-bench"


class StageCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.timings: dict[str, dict[str, Any]] = {}

    def key(self, stage: str, **determinants: Any) -> str:
        return sha256_json({"stage": stage, "version": STAGE_VERSIONS.get(stage, 1), **determinants})[:32]

    # --- folders -------------------------------------------------------------------------------------------------
    def _folder(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def valid_dir(self, stage: str, key: str, verify: bool = True) -> Path | None:
        path = self._folder(stage, key)
        man = path / MANIFEST
        if not man.exists():
            return None
        if verify:
            try:
                files = read_json(man)["files"]
                ok = all((path / name).exists() and sha256_file(path / name) == digest for name, digest in files.items())
            except Exception:
                ok = False
            if not ok:
                status(f"cache entry {stage}/{key} is corrupted: rebuilding it")
                shutil.rmtree(path, ignore_errors=True)
                return None
        return path

    def build_dir(self, stage: str, key: str, label: str, builder: Callable[[Path], dict | None]) -> Path:
        """The cached folder for (stage, key), built by `builder(tmp_dir)` if missing. Returns its final path."""
        found = self._hit(stage, key, label)
        if found is not None:
            return found
        final = self._folder(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        with self._build_lock(final, f"{stage}/{label}"):
            found = self._hit(stage, key, label)  # another process may have built it while we waited
            return found if found is not None else self._build(stage, key, label, final, builder)

    def _hit(self, stage: str, key: str, label: str) -> Path | None:
        """The valid cached folder (its build time recorded as this run's timing), or None."""
        found = self.valid_dir(stage, key)
        if found is not None:
            meta = read_json(found / MANIFEST).get("meta", {})
            self.timings[f"{stage}:{label}"] = {"seconds": meta.get("seconds"), "cached": True, "key": key}
        return found

    @contextlib.contextmanager
    def _build_lock(self, final: Path, what: str):
        """An exclusive flock on `<cache>/.locks/<stage>-<key>.lock` while a build runs (released if the process dies).

        The lock files live outside the stage folders, which hold only finished entries and in-progress temp folders.
        """
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        fd = os.open(locks / f"{final.parent.name}-{final.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                status(f"waiting for another process that is building {what}")
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _build(self, stage: str, key: str, label: str, final: Path, builder: Callable[[Path], dict | None]) -> Path:
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
        t0 = time.perf_counter()
        try:
            meta = builder(tmp) or {}
            seconds = round(time.perf_counter() - t0, 3)
            meta = {**meta, "seconds": seconds}
            files = {
                str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()
            }
            atomic_write_json(tmp / MANIFEST, {"stage": stage, "key": key, "files": files, "meta": meta})
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.timings[f"{stage}:{label}"] = {"seconds": seconds, "cached": False, "key": key}
        return final

    # --- small JSON values ---------------------------------------------------------------------------------------
    def get_json(self, stage: str, key: str) -> Any | None:
        path = self.root / stage / f"{key}.json"
        if not path.exists():
            return None
        try:
            data = read_json(path)
            if data.get("sha256") != sha256_json(data.get("value")):
                raise ValueError("hash mismatch")
        except Exception:
            status(f"cache entry {stage}/{key}.json is corrupted: recomputing it")
            path.unlink(missing_ok=True)
            return None
        return data

    def json_stage(self, stage: str, key: str, label: str, compute: Callable[[], Any]) -> Any:
        found = self.get_json(stage, key)
        if found is not None:
            self.timings[f"{stage}:{label}"] = {"seconds": found.get("seconds"), "cached": True, "key": key}
            return found["value"]
        t0 = time.perf_counter()
        value = compute()
        seconds = round(time.perf_counter() - t0, 3)
        atomic_write_json(self.root / stage / f"{key}.json",
                          {"value": value, "sha256": sha256_json(value), "seconds": seconds}, indent=None)
        self.timings[f"{stage}:{label}"] = {"seconds": seconds, "cached": False, "key": key}
        return value
