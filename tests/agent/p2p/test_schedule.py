"""Whom a fetch asks and when (agent/p2p/schedule.py), on a clock the test moves."""

from agent.p2p.schedule import Answer, FetchSchedule


def schedule(*peers: str, hedge_s: float = 5.0) -> FetchSchedule[str]:
    return FetchSchedule(list(peers), hedge_s=hedge_s, parallel=2)


def test_the_announcer_alone_is_asked_until_the_hedge():
    s = schedule("announcer", "b", "c")
    assert s.due(0.0) == ["announcer"]
    assert s.due(4.9) == []
    assert s.wake_at() == 5.0
    assert s.due(5.0) == ["b"]
    assert s.due(9.0) == []  # two in flight: no more, whatever the time
    assert s.wake_at() == float("inf")
    s.answered("b", Answer.OK, 9.5)
    assert s.done and not s.failed and s.due(20.0) == []


def test_a_busy_peer_is_asked_again_after_a_doubling_pause_and_nobody_new_is_asked():
    s = schedule("announcer", "b", hedge_s=30.0)
    assert s.due(0.0) == ["announcer"]
    s.answered("announcer", Answer.BUSY, 0.1)
    assert s.due(0.2) == []  # b is not asked because the announcer is busy
    assert s.wake_at() == 0.35
    assert s.due(0.35) == ["announcer"]
    s.answered("announcer", Answer.BUSY, 0.4)
    assert s.wake_at() == 0.9  # 0.5 s the second time
    assert s.due(0.9) == ["announcer"]
    s.answered("announcer", Answer.OK, 1.0)
    assert s.done


def test_a_failed_peer_is_dropped_and_the_next_asked_at_once_when_nothing_else_is_pending():
    s = schedule("announcer", "b", "c")
    assert s.due(0.0) == ["announcer"]
    s.answered("announcer", Answer.FAILED, 0.1)
    assert s.due(0.1) == ["b"]
    s.answered("b", Answer.FAILED, 0.2)
    assert s.due(0.2) == ["c"]
    s.answered("c", Answer.FAILED, 0.3)
    assert s.failed and s.due(1.0) == [] and s.wake_at() == float("inf")


def test_a_failure_does_not_hurry_the_next_ask_while_a_busy_peer_will_be_retried():
    s = schedule("announcer", "b", "c")
    assert s.due(0.0) == ["announcer"]
    assert s.due(5.0) == ["b"]
    s.answered("announcer", Answer.BUSY, 5.1)
    s.answered("b", Answer.FAILED, 5.2)  # b does not hold it yet
    assert s.due(5.2) == []  # c waits for the hedge; the announcer for its pause
    assert s.due(5.35) == ["announcer"]
    assert not s.failed
    assert s.due(10.0) == ["c"]


def test_busy_pauses_stop_doubling_at_the_cap():
    s = FetchSchedule(["a"], hedge_s=5.0, busy_s=1.0, busy_max_s=2.0)
    now = 0.0
    pauses = []
    for _ in range(4):
        assert s.due(now) == ["a"]
        s.answered("a", Answer.BUSY, now)
        pauses.append(s.wake_at() - now)
        now = s.wake_at()
    assert pauses == [1.0, 2.0, 2.0, 2.0]
    assert not s.failed  # a busy peer is never given up; the fetch's deadline ends it
