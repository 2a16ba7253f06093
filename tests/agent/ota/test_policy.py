"""The release a vehicle aims for: newest good one, revocation, rollback protection."""

from __future__ import annotations

import hashlib

from agent.ota.policy import Serving, plan, target
from chain.ledger import Release


def rel(v: int, revoked: bool = False) -> Release:
    return Release(v, hashlib.sha256(bytes([v])).digest(), 1000, v, "", revoked)


def serving(v: int) -> Serving:
    return Serving(v, rel(v).onnx_sha256.hex())


def test_the_target_is_the_newest_release_neither_revoked_nor_failed():
    rs = [rel(1), rel(2), rel(3, revoked=True)]
    assert target(rs, {}) == rs[1]
    assert target(rs, {2: "smoke: NaN"}) == rs[0]
    assert target(rs, {1: "x", 2: "y"}) is None
    assert target([], {}) is None


def test_a_newer_release_is_installed_and_the_served_one_kept():
    rs = [rel(1), rel(2)]
    assert plan(rs, None, {}).release == rs[1]
    assert plan(rs, serving(1), {}).action == "install"
    assert plan(rs, serving(2), {}).action == "keep"
    assert plan([], None, {}).action == "keep"


def test_revoking_the_served_release_moves_back_to_the_newest_good_one():
    rs = [rel(1), rel(2), rel(3, revoked=True)]
    p = plan(rs, serving(3), {})
    assert (p.action, p.release) == ("install", rs[1]) and "revoked" in p.reason
    p = plan(rs, serving(3), {2: "health: NaN"})
    assert (p.action, p.release) == ("install", rs[0])
    assert plan([rel(1, revoked=True)], serving(1), {}).action == "fallback"


def test_a_chain_that_forgot_the_served_release_is_refused():
    # Rollback: the chain (a stale or forged node) names fewer releases than we serve.
    p = plan([rel(1), rel(2)], serving(3), {})
    assert p.action == "refuse" and "serves release 3" in p.reason
    # Another hash for the served version.
    forged = [rel(1), Release(2, bytes(32), 1000, 2, "", False)]
    assert plan(forged, serving(2), {}).action == "refuse"


def test_an_older_release_is_never_installed_over_a_good_newer_one():
    rs = [rel(1), rel(2), rel(3)]
    for failed in ({}, {1: "x"}):
        p = plan(rs, serving(3), failed)
        assert p.action == "keep"
