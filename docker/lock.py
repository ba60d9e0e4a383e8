"""Print the pinned runtime dependency closure of the installed ``vigil`` distribution.

Run from a venv where ``pip install -e .`` has been done (Linux x86_64, CPython 3.11):

    python docker/lock.py > docker/requirements.lock.txt

torch, torchvision and the CUDA wheels they pull in are left out on purpose: the image
installs them per variant (CPU index or the PyPI CUDA build) before this lock.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

VARIANT_SPECIFIC = re.compile(r"^(torch|torchvision|triton|nvidia-.*|cuda-.*)$")

HEADER = """\
# Pinned runtime dependency closure of the vigil package (linux x86_64, CPython 3.11).
# torch/torchvision (and the CUDA wheels they pull in) are NOT listed: the image installs them
# per variant (CPU index or PyPI CUDA build) before this file; see docker/Dockerfile.
# Regenerate from a venv that has 'pip install -e .' with: python docker/lock.py > docker/requirements.lock.txt"""


def closure(root: str = "vigil") -> dict[str, str]:
    pinned: dict[str, str] = {}
    seen: set[tuple[str, tuple[str, ...]]] = set()
    todo = [Requirement(r) for r in md.distribution(root).requires or [] if "extra ==" not in r]
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), tuple(sorted(req.extras)))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            sys.exit(f"{req.name} is required but not installed; pip install -e . first")
        pinned[key[0]] = dist.version
        for sub in dist.requires or []:
            sreq = Requirement(sub)
            if sreq.marker and not any(sreq.marker.evaluate({"extra": e}) for e in [*req.extras, ""]):
                continue
            sreq.marker = None
            todo.append(sreq)
    return pinned


def main() -> None:
    print(HEADER)
    for name, version in sorted(closure().items()):
        if not VARIANT_SPECIFIC.match(name):
            print(f"{name}=={version}")


if __name__ == "__main__":
    main()
