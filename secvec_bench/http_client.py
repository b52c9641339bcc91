"""A small client for OpenAI-compatible chat-completion servers (vLLM, llama.cpp, TGI, hosted APIs), stdlib only.

Why not a vendor SDK: the judge needs four things and no more - a timeout per request, retries with exponential
backoff on transport errors / 429 / 5xx, bounded concurrency (threads), and an API key read from an environment
variable that is never logged or written. A failed request yields a `Completion` with `error` set, so one bad item
makes one unscored verdict instead of killing a long judging run.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

from .errors import UserError

DEFAULT_KEY_ENV = "SECVEC_JUDGE_API_KEY"
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class ClientConfig:
    base_url: str
    model: str = "default"
    api_key_env: str = DEFAULT_KEY_ENV
    timeout: float = 60.0
    retries: int = 3
    backoff: float = 0.5  # seconds before the first retry; doubles each time, with jitter
    concurrency: int = 4
    max_tokens: int = 160
    temperature: float = 0.0

    def public(self) -> dict[str, Any]:
        """For provenance: everything but the key (only the name of its environment variable)."""
        return {k: v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Completion:
    text: str | None
    error: str | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


def _endpoint(base_url: str) -> str:
    url = base_url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise UserError(f"--judge-url {base_url!r} must start with http:// or https://")
    if url.endswith("/chat/completions"):
        return url
    if not url.endswith("/v1"):
        url += "/v1"
    return url + "/chat/completions"


class ChatClient:
    def __init__(self, cfg: ClientConfig) -> None:
        if cfg.timeout <= 0 or cfg.retries < 0 or cfg.concurrency < 1:
            raise UserError("judge client: --timeout must be > 0, --retries >= 0, --concurrency >= 1")
        self.cfg = cfg
        self.url = _endpoint(cfg.base_url)
        self._key = os.environ.get(cfg.api_key_env, "")

    def _request(self, messages: list[dict[str, str]]) -> tuple[int | None, str]:
        body = json.dumps(
            {
                "model": self.cfg.model,
                "messages": messages,
                "temperature": self.cfg.temperature,
                "max_tokens": self.cfg.max_tokens,
            }
        ).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.cfg.timeout) as resp:  # noqa: S310 - URL is user config
            return resp.status, resp.read().decode("utf-8", errors="replace")

    def _redact(self, text: str) -> str:
        """Model text goes into verdict rationales on disk: never let a server echo the key into them."""
        return text.replace(self._key, "[redacted]") if self._key else text

    def complete(self, messages: list[dict[str, str]]) -> Completion:
        """One completion; the API key is masked in whatever comes back, since text and error messages end up in
        verdict rationales and results (a proxy or debug server may echo the Authorization header)."""
        c = self._complete(messages)
        if self._key and ((c.text and self._key in c.text) or (c.error and self._key in c.error)):
            mask = lambda s: s.replace(self._key, "[REDACTED]") if s else s  # noqa: E731
            return Completion(mask(c.text), mask(c.error), c.attempts)
        return c

    def _complete(self, messages: list[dict[str, str]]) -> Completion:
        last = "no attempt"
        for attempt in range(1, self.cfg.retries + 2):
            retryable = True
            try:
                _, raw = self._request(messages)
                text = _extract_text(raw)
                if text is None:  # a server that answers garbage will answer garbage again: no retry
                    # the body is not quoted: a misbehaving proxy may echo request headers, i.e. the key
                    return Completion(None, f"malformed server reply ({len(raw)} bytes, not a chat completion)", attempt)
                return Completion(self._redact(text), None, attempt)
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
                retryable = exc.code in RETRY_STATUS
            except (urllib.error.URLError, socket.timeout, TimeoutError, OSError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", exc)
                last = f"{type(reason).__name__}: {reason}"
            if not retryable or attempt > self.cfg.retries:
                return Completion(None, last, attempt)
            delay = self.cfg.backoff * (2 ** (attempt - 1))
            time.sleep(delay * (0.5 + random.random() / 2))
        return Completion(None, last, self.cfg.retries + 1)

    def complete_many(self, conversations: Sequence[list[dict[str, str]]]) -> list[Completion]:
        """Completions in input order, at most `concurrency` requests in flight."""
        if not conversations:
            return []
        with ThreadPoolExecutor(max_workers=min(self.cfg.concurrency, len(conversations))) as pool:
            return list(pool.map(self.complete, conversations))


def _extract_text(raw: str) -> str | None:
    """The assistant text of an OpenAI chat (or legacy text) completion body; None if the body is not one."""
    try:
        doc = json.loads(raw)
        choice = doc["choices"][0]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError):
        return None
    if isinstance(choice, dict):
        msg = choice.get("message")
        if isinstance(msg, dict) and isinstance(msg.get("content"), str):
            return msg["content"]
        if isinstance(choice.get("text"), str):
            return choice["text"]
    return None
