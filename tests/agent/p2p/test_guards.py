"""py-libp2p workarounds (agent/p2p/guards.py) on real hosts and real signed peer records."""

from libp2p import new_host
from libp2p.crypto.secp256k1 import create_new_key_pair
from libp2p.peer.peerstore import env_to_send_in_RPC
from libp2p.pubsub import gossipsub, pubsub
from libp2p.pubsub.pb.rpc_pb2 import RPC
from libp2p.pubsub.utils import maybe_consume_signed_record

from agent.p2p.guards import RECORD_RECHECK_S, PeerRecordMemo, memoise_peer_records


def rpc_with_record(host) -> RPC:
    rpc = RPC()
    rpc.senderRecord, _ = env_to_send_in_RPC(host)
    return rpc


def counting(checks: list):
    """Upstream's real check, recording each peer it is asked about."""
    def check(msg, host, peer):
        checks.append(peer)
        return maybe_consume_signed_record(msg, host, peer)
    return check


def test_a_peers_record_is_checked_once_then_again_after_the_recheck_time():
    sender, receiver = new_host(key_pair=create_new_key_pair()), new_host(
        key_pair=create_new_key_pair())
    checks: list = []
    now = [0.0]
    memo = PeerRecordMemo(counting(checks), clock=lambda: now[0])
    rpc = rpc_with_record(sender)
    assert all(memo(rpc, receiver, sender.get_id()) for _ in range(50))
    assert len(checks) == 1
    now[0] = RECORD_RECHECK_S + 1
    assert memo(rpc, receiver, sender.get_id())
    assert len(checks) == 2
    assert memo(RPC(), receiver, sender.get_id())  # no record: nothing to check
    assert len(checks) == 2


def test_a_record_that_fails_its_check_is_refused_every_time():
    sender, impostor, receiver = (new_host(key_pair=create_new_key_pair()) for _ in range(3))
    checks: list = []
    memo = PeerRecordMemo(counting(checks))
    rpc = rpc_with_record(sender)  # sender's record, relayed as if it were the impostor's
    assert not memo(rpc, receiver, impostor.get_id())
    assert not memo(rpc, receiver, impostor.get_id())
    assert len(checks) == 2  # never remembered
    assert memo(rpc, receiver, sender.get_id())  # from its real owner it is fine


def test_the_memo_is_installed_once_in_both_upstream_modules():
    memoise_peer_records()
    first = pubsub.maybe_consume_signed_record
    memoise_peer_records()
    assert isinstance(first, PeerRecordMemo)
    assert pubsub.maybe_consume_signed_record is first
    assert gossipsub.maybe_consume_signed_record is first
