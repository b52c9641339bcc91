"""`secvec-bench study NAME ...`: run a named study (a sweep over scenarios, defenses and seeds)."""

from __future__ import annotations

from typing import Any


def add_to(sub: Any) -> None:
    from ..studies import STUDIES, load_all

    load_all()
    p = sub.add_parser("study", help="run a named study (see `secvec-bench study -h`)")
    studies = p.add_subparsers(dest="study", metavar="STUDY")
    studies.required = True
    for name in STUDIES.names():
        study = STUDIES.get(name)()
        sp = studies.add_parser(name, help=study.help)
        study.add_arguments(sp)
        sp.set_defaults(func=study.run)
