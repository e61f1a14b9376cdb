"""Procedural problem generators (math word problems, documentation questions).

Both assign a problem to the train or heldout split by a stable hash of what the problem is
about (``in_heldout``), so the two splits can never share a problem, whatever sizes or seeds
are asked for.
"""

from __future__ import annotations

import hashlib

HELDOUT_MODULUS = 5  # one problem in five goes to heldout


def in_heldout(key: str) -> bool:
    """Whether the problem identified by ``key`` belongs to the heldout split (sha256 % 5 == 0).

    A hash of the problem's content rather than of its position keeps the assignment stable
    when sizes, seeds or generation order change.
    """
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % HELDOUT_MODULUS == 0
