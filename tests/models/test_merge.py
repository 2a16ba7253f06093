"""Merge rules against brute-force float references, the checks, and bit-reproducibility."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from models.merge import (
    RULES,
    Contribution,
    MergeConfig,
    MergeError,
    cap_samples,
    from_fixed,
    krum_select,
    merge,
    mix_nearest,
    to_fixed,
)

P = 2000
TOL = 2e-6  # fixed point resolution is ~1e-6


def _fleet(n: int = 7, seed: int = 0, outliers: int = 0) -> list[Contribution]:
    rng = np.random.default_rng(seed)
    centre = rng.standard_normal(P).astype(np.float32) * 0.01
    out = []
    for i in range(n):
        d = centre + rng.standard_normal(P).astype(np.float32) * 0.003
        if i >= n - outliers:
            d = -20 * centre + rng.standard_normal(P).astype(np.float32)
        out.append(Contribution(d.astype(np.float32), samples=100 + 37 * i))
    return out


def _stack(cs: list[Contribution]) -> np.ndarray:
    return np.stack([c.delta.astype(np.float64) for c in cs])


def _mixed(x: np.ndarray, f: int) -> np.ndarray:
    """Float reference of ``mix_nearest``: each row the mean of its n - f nearest rows."""
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    return np.stack([x[np.argsort(d[i], kind="stable")[: len(x) - f]].mean(0)
                     for i in range(len(x))])


def test_robust_rules_mix_each_delta_with_its_nearest_neighbours():
    cs = _fleet(8, outliers=2)
    x = _stack(cs)
    got = from_fixed(mix_nearest(to_fixed(x.astype(np.float32)), 2)).astype(np.float64)
    assert np.abs(got - _mixed(x, 2)).max() < TOL
    honest = x[:6].mean(0)
    # Each honest delta mixes only with honest ones; an outlier's pull shrinks to 2/6 of it.
    assert np.abs(got[:6] - honest).max() < TOL
    assert np.linalg.norm(got[7] - honest) < 0.4 * np.linalg.norm(x[7] - honest)
    assert np.array_equal(mix_nearest(to_fixed(x), 0), to_fixed(x))  # f = 0: nothing to mix


def test_weighted_mean_matches_reference():
    cs = _fleet()
    w = np.array(cap_samples([c.samples for c in cs]), np.float64)
    ref = (_stack(cs) * w[:, None]).sum(0) / w.sum()
    out = merge(cs, MergeConfig("mean")).delta
    assert np.abs(out - ref).max() < TOL


def test_median_and_trimmed_mean_match_reference():
    cs = _fleet(8)
    x = _mixed(_stack(cs), 2)
    assert np.abs(merge(cs, MergeConfig("median")).delta - np.median(x, 0)).max() < TOL
    ref = np.sort(x, 0)[2:6].mean(0)
    assert np.abs(merge(cs, MergeConfig("trimmed_mean", byzantine=2)).delta - ref).max() < TOL


def test_krum_selects_like_brute_force():
    cs = _fleet(9, outliers=2)
    x = _stack(cs)
    n, f = 9, 2
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    scores = [np.sort(np.delete(d[i], i))[: n - f - 2].sum() for i in range(n)]
    ref = sorted(np.argsort(scores, kind="stable")[: n - f].tolist())
    assert krum_select(to_fixed(x.astype(np.float32)), f) == ref
    assert 7 not in ref and 8 not in ref


def test_geometric_median_matches_weiszfeld_reference():
    cs = _fleet(7, outliers=2)
    x, w = _mixed(_stack(cs), 2), np.array(cap_samples([c.samples for c in cs]), np.float64)
    z = (x * w[:, None]).sum(0) / w.sum()
    for _ in range(200):
        beta = w / np.maximum(np.linalg.norm(x - z, axis=1), 1e-6)
        z = (x * beta[:, None]).sum(0) / beta.sum()
    out = merge(cs, MergeConfig("geomed", byzantine=2)).delta
    assert np.abs(out - z).max() < 1e-4
    honest = _stack(cs[:5]).mean(0)
    assert np.linalg.norm(out - honest) < np.linalg.norm(honest) * 0.5


def test_centered_clipping_matches_reference():
    cs = _fleet(8, outliers=2)
    x = _mixed(_stack(cs), 2)
    v = np.median(x, 0)
    tau = sorted(np.linalg.norm(x - v, axis=1))[4]
    for _ in range(3):
        diffs = x - v
        d = np.linalg.norm(diffs, axis=1)
        c = np.where(d > 0, np.minimum(1.0, tau / np.maximum(d, 1e-30)), 1.0)
        v = v + (diffs * c[:, None]).sum(0) / len(x)
    assert np.abs(merge(cs, MergeConfig("cclip")).delta - v).max() < 1e-4


@pytest.mark.parametrize("rule", [r for r in RULES if r != "mean"])
def test_robust_rules_resist_outliers(rule):
    cs = _fleet(8, outliers=2)
    honest = _stack(cs[:6]).mean(0)
    out = merge(cs, MergeConfig(rule, byzantine=2)).delta
    plain = merge(cs, MergeConfig("mean")).delta
    assert np.linalg.norm(out - honest) < 0.5 * np.linalg.norm(plain - honest)


def test_checks_reject_before_the_rule():
    cs = _fleet(5)
    bad = cs[1].delta.copy()
    bad[3] = np.inf
    big = np.full(P, 1.0, np.float32)
    cs = [cs[0], Contribution(bad, 10), Contribution(big, 10), cs[3],
          Contribution(cs[4].delta, 0)]
    res = merge(cs, MergeConfig("mean", max_norm=10.0))
    assert res.accepted == (0, 3)
    reasons = dict(res.rejected)
    assert "NaN or Inf" in reasons[1] and "norm" in reasons[2] and "sample" in reasons[4]
    with pytest.raises(MergeError, match="all 1 contributions were rejected"):
        merge([Contribution(bad, 1)], MergeConfig())
    with pytest.raises(ValueError, match="unknown merge rule"):
        MergeConfig("average")


def test_fixed_point_round_trip():
    x = np.array([0.0, 1e-6, -3.25, 31.999], np.float32)
    assert np.abs(from_fixed(to_fixed(x)) - x).max() < 1e-6


def test_order_free_rules_ignore_order():
    # The weighted rules are reproducible in the canonical order only: capped counts tie, and
    # the integer weights break ties by position.
    cs = _fleet(8, outliers=2)
    rev = cs[::-1]
    for rule in ("median", "trimmed_mean"):
        a = merge(cs, MergeConfig(rule, byzantine=2)).delta
        b = merge(rev, MergeConfig(rule, byzantine=2)).delta
        assert np.array_equal(a, b), rule


MERGE_SCRIPT = """
import hashlib, json, sys
import numpy as np
import torch
torch.set_num_threads(int(sys.argv[1]))
from models.merge import Contribution, MergeConfig, RULES, merge
rng = np.random.default_rng(42)
base = rng.standard_normal(145000) * 0.01
cs = [Contribution((base + rng.standard_normal(145000) * 0.01).astype(np.float32), 50 + i)
      for i in range(8)]
out = {r: hashlib.sha256(merge(cs, MergeConfig(r, byzantine=2)).delta.tobytes()).hexdigest()
       for r in RULES}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_merge_is_bit_identical_across_processes_and_threads():
    runs = []
    for threads in ("1", "2"):
        env = {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
               "MKL_NUM_THREADS": threads, "PATH": "/usr/bin:/bin"}
        r = subprocess.run([sys.executable, "-c", MERGE_SCRIPT, threads], capture_output=True,
                           text=True, env=env, timeout=300, check=True)
        runs.append(json.loads(r.stdout))
    assert runs[0] == runs[1]
    assert len(set(runs[0].values())) == len(RULES)  # six different rules, six results
    # And this process agrees too.
    rng = np.random.default_rng(42)
    base = rng.standard_normal(145000) * 0.01
    cs = [Contribution((base + rng.standard_normal(145000) * 0.01).astype(np.float32), 50 + i)
          for i in range(8)]
    here = hashlib.sha256(merge(cs, MergeConfig("geomed", byzantine=2)).delta.tobytes())
    assert here.hexdigest() == runs[0]["geomed"]


# sha256 of each rule's merged delta (float32, little-endian) for ``_golden_fleet()``, computed
# once (again when the sample cap, then nearest-neighbour mixing came in, and for geomed when
# norms went to 2**-15 resolution so that 1M-weight models merge exactly) and committed: a
# numpy, BLAS or CPU change that alters any bit fails here, not in a fleet where vehicles stop
# agreeing.
GOLDEN = {
    "mean": "bdbac113bea76c582f45b5de53dcd712b44184e6f31470a7ef2280e31dfbe007",
    "median": "bd5422b14cf80ab3c0d9a605188448a8b60a3e1e040ea7b3b7667cacd51509f3",
    "trimmed_mean": "04bf2b6e83f547e58a1ba0d51698e9b1eeb76b917ea91f611ae75faa8f79b2dc",
    "krum": "82bd383f0ff128824c99a341f02870fb2f9fc1600475db9f2a8199d2af095a18",
    "geomed": "c8e89378b85136be25f491722f38fddba72f5acb293a253a3144cd380adb2f4e",
    "cclip": "f5952d77abd2d2c08801d019a3e2aea436a715e686cf18c2fd3a0017cf06a9f1",
}


def _golden_fleet() -> list[Contribution]:
    """Seven deltas from integer arithmetic alone (no RNG whose stream could change); the
    last one is a scaled, sign-flipped outlier."""
    j = np.arange(3001, dtype=np.int64)
    out = []
    for i in range(7):
        ints = (i * 7919 + j * 104729 + (j * j) % 997) % 2001 - 1000
        d = ints.astype(np.float32) / np.float32(1e5)
        if i == 6:
            d = d * np.float32(-40)
        out.append(Contribution(d.astype(np.float32), samples=100 + 37 * i))
    return out


@pytest.mark.parametrize("rule", list(RULES))
def test_each_rule_reproduces_its_committed_golden_hash(rule):
    assert set(GOLDEN) == set(RULES)  # a new rule needs its golden hash
    assert len(set(GOLDEN.values())) == len(GOLDEN)  # and each rule does its own arithmetic
    delta = merge(_golden_fleet(), MergeConfig(rule, byzantine=2)).delta
    assert hashlib.sha256(delta.astype("<f4").tobytes()).hexdigest() == GOLDEN[rule]


@pytest.mark.parametrize("rule", ["mean", "krum", "geomed"])
def test_an_inflated_sample_count_weighs_no_more_than_the_median(rule):
    rng = np.random.default_rng(3)
    honest = [Contribution(rng.normal(0, 0.01, 64).astype(np.float32), 100) for _ in range(6)]
    liar = Contribution(np.full(64, 0.05, np.float32), 2**32 - 1)
    fair = Contribution(liar.delta, 100)
    cfg = MergeConfig(rule, byzantine=1)
    got = merge([*honest, liar], cfg).delta
    assert np.array_equal(got, merge([*honest, fair], cfg).delta)
    assert cap_samples([5, 2**32 - 1, 7, 3]) == [5, 5, 5, 3]
