"""Merge rules: pure functions from contributions (delta, samples) to one merged delta.

Rules of this file:
- Every rule is bit-reproducible across processes, thread counts, CPUs and numpy builds, because
  a round's committer and every verifier must get the same model hash. So no float reductions:
  deltas become int64 fixed point (``FRAC_BITS``), sums and distances are exact integer sums
  (order-free), and the only float operations are single IEEE-754 operations (division,
  square root, int-to-float conversion), which are correctly rounded everywhere.
- Contributions come in the round's canonical order (sorted by payload hash); rules never depend
  on anything else (no clocks, no randomness, no thread counts).
- ``check`` runs before any rule: non-finite values, out-of-range coordinates and norms over the
  limit are rejected with a named reason and never reach a rule.
- Sample counts are self-reported, so no contribution weighs more than the median one: every
  count is capped at the lower median of the accepted counts before any rule sees it
  (``cap_samples``). A vehicle claiming 2**32 - 1 samples weighs what a typical vehicle
  weighs; honest vehicles with less data than the median keep their smaller weight. Median,
  trimmed mean and centered clipping ignore weights; mean, multi-Krum and the geometric median
  use the capped ones.
- Vehicles drive different towns and weathers, so honest deltas disagree, and an attacker hides
  in that spread: under a sign flip, coordinate-wise rules halve the fleet's step on every
  weight where vehicles disagree. So the robust rules (all but the plain mean) first mix each
  delta with its nearest neighbours (``mix_nearest``, NNM: Allouah et al., "Fixing by Mixing",
  AISTATS 2023): every delta becomes the mean of its n - f nearest deltas, itself included.
  Honest deltas become near copies of the honest mean; an attacker's is diluted by the honest
  deltas nearest to it. The plain mean stays the undefended baseline. f is ``byzantine``, else
  the trim share (a quarter of the fleet), at most (n - 1) // 2. Set it no lower than the
  attackers you guard against: with f too low, an honest delta's nearest set reaches an
  attacker and the mixing spreads the attack instead of diluting it.

Rules: weighted mean (by samples), coordinate median, trimmed mean, multi-Krum, geometric
median (Weiszfeld), centered clipping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.codec import MAX_ABS_VALUE

FRAC_BITS = 20  # fixed point: 1 unit = 2**-20 ~ 1e-6 of a weight
WEIGHT_BITS = 16  # integer mixing weights sum to exactly 2**16
NORM_SHIFT = 5  # distances at 2**-15 resolution. A coordinate of a difference of two deltas is
#                 at most 64 = 2**6 (|v| <= 32), 2**21 units after the shift, 2**42 squared; so
#                 a squared distance over 2**20 weights is at most 2**62 and never overflows int64
MAX_MERGE_WEIGHTS = 1 << 20  # the models' parameter budget (1M) fits
WEISZFELD_ITERS = 16
CCLIP_ITERS = 3


class MergeError(ValueError):
    """No contribution survived the checks, or the rule cannot run on what did."""


@dataclass(frozen=True)
class Contribution:
    delta: np.ndarray  # (P,) float32
    samples: int  # training samples behind it: the weight in the weighted rules


@dataclass(frozen=True)
class MergeConfig:
    rule: str = "mean"
    byzantine: int = 0  # f: attackers the rule must tolerate (Krum, trimmed mean)
    trim: float = 0.25  # trimmed mean: fraction cut from each end when byzantine is 0
    max_norm: float = 50.0  # L2 norm above which a delta is rejected before merging

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown merge rule {self.rule!r}; known: {', '.join(RULES)}")
        if self.byzantine < 0:
            raise ValueError(f"byzantine {self.byzantine}: the attackers tolerated cannot be "
                             "negative")

    def tolerated(self, n: int) -> int:
        """The attackers a rule guards against among ``n``: ``byzantine``, else the trim share."""
        return self.byzantine if self.byzantine else math.floor(self.trim * n)

    def problem_with(self, n: int) -> str | None:
        """Why this rule cannot merge ``n`` contributions, or None when it can."""
        f = self.byzantine
        if self.rule == "krum" and n - f - 2 < 1:
            return f"multi-Krum tolerating {f} attacker(s) needs more than {f + 2} contributions"
        if self.rule == "trimmed_mean" and f and n - 2 * f < 1:
            return f"the trimmed mean cutting {f} from each end needs more than {2 * f} " \
                   "contributions"
        return None


@dataclass(frozen=True)
class MergeResult:
    delta: np.ndarray  # (P,) float32 merged delta
    accepted: tuple[int, ...]  # indices into the contributions, in order
    rejected: tuple[tuple[int, str], ...] = field(default=())  # (index, reason)


# --- fixed point --------------------------------------------------------------------------------

def to_fixed(x: np.ndarray) -> np.ndarray:
    return np.rint(x.astype(np.float64) * float(1 << FRAC_BITS)).astype(np.int64)


def from_fixed(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float64) * (1.0 / (1 << FRAC_BITS))).astype(np.float32)


def sq_norm(x: np.ndarray) -> int:
    """Exact squared L2 norm of a fixed-point vector, in units of 2**-30."""
    y = x >> NORM_SHIFT
    return int((y * y).sum())


def norm(x: np.ndarray) -> float:
    """L2 norm in weight units (float, correctly rounded from the exact integer)."""
    return math.sqrt(float(sq_norm(x))) / (1 << (FRAC_BITS - NORM_SHIFT))


def int_weights(w: Sequence[float]) -> np.ndarray:
    """Non-negative weights as integers summing to 2**WEIGHT_BITS (largest remainders first)."""
    total = math.fsum(w)
    if total <= 0:
        raise MergeError("weights sum to zero")
    scaled = [x / total * (1 << WEIGHT_BITS) for x in w]
    out = [math.floor(s) for s in scaled]
    short = (1 << WEIGHT_BITS) - sum(out)
    order = sorted(range(len(w)), key=lambda i: (-(scaled[i] - out[i]), i))
    for i in order[:short]:
        out[i] += 1
    return np.array(out, np.int64)


def combine(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Σ w_i x_i / 2**WEIGHT_BITS, rounded to nearest, for integer weights ``w_i``."""
    acc = np.zeros(x.shape[1], np.int64)
    for xi, wi in zip(x, weights.tolist(), strict=True):
        if wi:
            acc += xi * wi
    return (acc + (1 << (WEIGHT_BITS - 1))) >> WEIGHT_BITS


def pairwise_sq_dist(x: np.ndarray) -> np.ndarray:
    """(n, n) exact squared distances (Python ints in an object array)."""
    y = x >> NORM_SHIFT
    n = len(x)
    d = np.zeros((n, n), dtype=object)
    for i in range(n):
        for j in range(i + 1, n):
            diff = y[i] - y[j]
            d[i, j] = d[j, i] = int((diff * diff).sum())
    return d


# --- the rules (fixed point in, fixed point out) ----------------------------------------------

def weighted_mean(x: np.ndarray, samples: Sequence[int], cfg: MergeConfig) -> np.ndarray:
    return combine(x, int_weights([float(s) for s in samples]))


def coordinate_median(x: np.ndarray, samples: Sequence[int], cfg: MergeConfig) -> np.ndarray:
    s = np.sort(x, axis=0)
    n = len(x)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) >> 1


def trimmed_mean(x: np.ndarray, samples: Sequence[int], cfg: MergeConfig) -> np.ndarray:
    n = len(x)
    k = cfg.tolerated(n)
    if n - 2 * k < 1:
        raise MergeError(f"trimmed mean cannot cut {k} from each end of {n} contributions")
    kept = np.sort(x, axis=0)[k : n - k]
    c = len(kept)
    return (2 * kept.sum(axis=0) + c) // (2 * c)


def krum_select(x: np.ndarray, f: int) -> list[int]:
    """Multi-Krum: the n - f contributions with the smallest sums of distances to their
    n - f - 2 nearest neighbours (Blanchard et al. 2017), ties to the lower index."""
    n = len(x)
    if n - f - 2 < 1:
        raise MergeError(f"Krum needs n > f + 2; got n={n}, f={f}")
    d = pairwise_sq_dist(x)
    scores = []
    for i in range(n):
        others = sorted(d[i, j] for j in range(n) if j != i)
        scores.append((sum(others[: n - f - 2]), i))
    return sorted(i for _, i in sorted(scores)[: n - f])


def multi_krum(x: np.ndarray, samples: Sequence[int], cfg: MergeConfig) -> np.ndarray:
    chosen = krum_select(x, cfg.byzantine)
    return combine(x[chosen], int_weights([float(samples[i]) for i in chosen]))


def geometric_median(x: np.ndarray, samples: Sequence[int], cfg: MergeConfig) -> np.ndarray:
    """Weiszfeld's iteration for the sample-weighted geometric median, from the weighted mean."""
    z = weighted_mean(x, samples, cfg)
    eps = 1e-6
    for _ in range(WEISZFELD_ITERS):
        dist = [norm(xi - z) for xi in x]
        beta = [s / max(d, eps) for s, d in zip(samples, dist, strict=True)]
        z_next = combine(x, int_weights(beta))
        if np.array_equal(z_next, z):
            break
        z = z_next
    return z


def centered_clipping(x: np.ndarray, samples: Sequence[int], cfg: MergeConfig) -> np.ndarray:
    """Centered clipping (Karimireddy et al. 2021) from the coordinate median; the radius tau is
    the median distance of the contributions to that start."""
    v = coordinate_median(x, samples, cfg)
    n = len(x)
    dist0 = sorted(norm(xi - v) for xi in x)
    tau = dist0[n // 2]
    for _ in range(CCLIP_ITERS):
        diffs = x - v
        scale = [min(1.0, tau / d) if d > 0 else 1.0 for d in (norm(di) for di in diffs)]
        w = np.array([math.floor(c / n * (1 << WEIGHT_BITS)) for c in scale], np.int64)
        v = v + combine(diffs, w)
    return v


# Rules that look at each coordinate on its own. On top-k sparsified deltas most coordinates are
# sent by a few vehicles only, so their median (or trimmed mean) is zero and the fleet stops
# learning; pair compression with a distance-based rule (krum, geomed, cclip) instead.
COORDINATE_RULES = frozenset({"median", "trimmed_mean"})
MIN_DENSITY_FOR_COORDINATE_RULES = 0.5

Rule = Callable[[np.ndarray, Sequence[int], MergeConfig], np.ndarray]
RULES: dict[str, Rule] = {
    "mean": weighted_mean,
    "median": coordinate_median,
    "trimmed_mean": trimmed_mean,
    "krum": multi_krum,
    "geomed": geometric_median,
    "cclip": centered_clipping,
}


# --- checks and the entry point ---------------------------------------------------------------

def check(c: Contribution, size: int, max_norm: float) -> str | None:
    """Why ``c`` must not be merged, or None."""
    if c.delta.shape != (size,):
        return f"shape {c.delta.shape} is not ({size},)"
    if c.samples <= 0:
        return f"sample count {c.samples} is not positive"
    if not np.all(np.isfinite(c.delta)):
        return "holds NaN or Inf"
    peak = float(np.abs(c.delta).max(initial=0.0))
    if peak > MAX_ABS_VALUE:
        return f"a coordinate of {peak:.3g} is over {MAX_ABS_VALUE}"
    n = norm(to_fixed(c.delta))
    if n > max_norm:
        return f"norm {n:.3g} is over {max_norm}"
    return None


def mix_nearest(x: np.ndarray, f: int) -> np.ndarray:
    """Each fixed-point row replaced by the mean of its ``n - f`` nearest rows (exact squared
    distances; itself first, ties to the lower index), rounded half up in exact integers."""
    n = len(x)
    k = n - f
    if f <= 0 or k < 1:
        return x
    d = pairwise_sq_dist(x)
    out = np.empty_like(x)
    for i in range(n):
        near = sorted(range(n), key=lambda j: (j != i, d[i, j], j))[:k]
        out[i] = (2 * x[near].sum(axis=0) + k) // (2 * k)
    return out


def cap_samples(samples: Sequence[int]) -> list[int]:
    """Each count capped at the lower median of all of them (exact integers)."""
    cap = sorted(samples)[(len(samples) - 1) // 2]
    return [min(s, cap) for s in samples]


def merge(contributions: Sequence[Contribution], cfg: MergeConfig) -> MergeResult:
    """Check every contribution, then merge the survivors with ``cfg.rule``."""
    if not contributions:
        raise MergeError("no contributions to merge")
    size = len(contributions[0].delta)
    if size > MAX_MERGE_WEIGHTS:
        raise MergeError(f"{size} weights is over the {MAX_MERGE_WEIGHTS} exact-merge limit")
    accepted, rejected = [], []
    for i, c in enumerate(contributions):
        reason = check(c, size, cfg.max_norm)
        if reason is None:
            accepted.append(i)
        else:
            rejected.append((i, reason))
    if not accepted:
        raise MergeError(f"all {len(contributions)} contributions were rejected: {rejected[0][1]}")
    x = np.stack([to_fixed(contributions[i].delta) for i in accepted])
    samples = cap_samples([contributions[i].samples for i in accepted])
    if cfg.rule != "mean":
        x = mix_nearest(x, min(cfg.tolerated(len(x)), (len(x) - 1) // 2))
    merged = RULES[cfg.rule](x, samples, cfg)
    return MergeResult(delta=from_fixed(merged), accepted=tuple(accepted), rejected=tuple(rejected))
