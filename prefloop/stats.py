"""How sure a measured rate is: the Wilson score interval, and whether two of them overlap.

A reward model's `eval/accuracy` is a share of held-out pairs; on the tens of pairs a young project
holds out, the plain "accuracy ± 1.96·sqrt(p(1-p)/n)" interval is wrong near 0 and 1 and can leave
[0, 1]; Wilson's interval (Wilson 1927; recommended by Brown, Cai and DasGupta 2001 for small n)
stays inside and keeps close to its nominal 95% coverage. 27 pairs at 0.37 give [0.22, 0.56].

Two versions are called different only when their intervals do not overlap: a conservative test
(non-overlapping 95% intervals imply p < 0.05, overlapping ones do not imply the converse), which
is the point: nothing is published as "better" on noise.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """(low, high) of the Wilson score interval for `successes` out of `n` trials; (0, 1) when n is 0."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"wilson_interval: need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_interval(accuracy: float, n: int) -> tuple[float, float]:
    """Wilson interval of an accuracy measured on `n` items, rounded to 4 digits like the metrics."""
    low, high = wilson_interval(round(accuracy * n), n)
    return round(low, 4), round(high, 4)


def compare(current: tuple[float, float], previous: tuple[float, float]) -> str:
    """ "better", "worse" or "overlap" for two (low, high) intervals."""
    if current[0] > previous[1]:
        return "better"
    if current[1] < previous[0]:
        return "worse"
    return "overlap"
