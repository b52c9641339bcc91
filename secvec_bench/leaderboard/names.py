"""Safe file names for pages whose identity comes from untrusted strings (model, scenario and defense names).

A name is a short ASCII slug for humans plus a hash of the full identity for uniqueness: two identities that slug the
same (`a/b` and `a_b`) still get different files, and nothing in the name can climb out of the site folder.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Iterable

_NON_SLUG = re.compile(r"[^a-z0-9]+")
MAX_SLUG = 48


def slugify(text: str) -> str:
    """Lower-case ASCII letters, digits and single dashes; never empty, never starting with a dot or dash."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    slug = _NON_SLUG.sub("-", ascii_text).strip("-")[:MAX_SLUG].strip("-")
    return slug or "x"


def safe_name(parts: Iterable[str], suffix: str = ".html") -> str:
    """`<slug>-<10 hex of sha256>` + suffix; the hash covers every part with an unambiguous separator."""
    parts = [str(p) for p in parts]
    # surrogatepass: names read from JSON may hold lone surrogates; they still hash, and hash apart.
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{slugify('-'.join(parts))}-{digest}{suffix}"
