"""Two or three real libp2p hosts on 127.0.0.1: gossip through validators, fetch by hash."""

from __future__ import annotations

import hashlib

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.secp256k1 import create_new_key_pair
from libp2p.network.exceptions import SwarmDialAllFailedError
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

from agent.p2p.announce import sign
from agent.p2p.fetch import FetchError
from agent.p2p.node import Node, NodeConfig
from agent.p2p.store import Kind
from tests.agent.p2p.conftest import FLEET, accept_all, chain_of_nodes, identity


def test_announcements_that_pass_the_validator_arrive_and_others_are_counted():
    stranger = identity("stranger")

    def only_known(ann):
        return "unregistered" if ann.sender == stranger.address else None

    async def main():
        # a would send anything; b takes only registered senders.
        async with chain_of_nodes("a", "b", validators=[accept_all, only_known]) as (a, b):
            bad = sign(stranger, FLEET, 0, b"\x00" * 32, b"\x01" * 32, 10, 1, 0.0)
            good = sign(a.identity, FLEET, 0, b"\x00" * 32, b"\x02" * 32, 10, 1, 0.0)
            with trio.fail_after(60):  # a hang guard: the mesh forms within a few heartbeats
                while True:  # the mesh forms in the first heartbeats: publish until heard
                    await a.publish(bad)
                    await a.publish(good)
                    with trio.move_on_after(0.5):
                        got = await b.announcements.receive()
                        break
            assert got.payload_hash == good.payload_hash and got.sender == a.identity.address
            assert b.stats["announce_rejected_unregistered"] >= 1
            # The receiver keeps the signed announcement to serve to peers that missed it.
            assert b.store.get(Kind.ANNOUNCEMENT, good.payload_hash) == good.raw

    trio.run(main)


def test_any_peer_that_holds_a_payload_serves_it():
    data = bytes(range(256)) * 4000  # ~1 MB: several chunks

    async def main():
        async with chain_of_nodes("a", "b", "c") as (a, b, c):
            key = a.store.put(Kind.DELTA, data)
            assert await b.fetch(Kind.DELTA, key, len(data)) == data
            assert b.store.get(Kind.DELTA, key) == data
            # c is connected to b only: b serves what it fetched.
            assert a.peer_id not in c.connected()
            assert await c.fetch(Kind.DELTA, key, len(data)) == data
            assert b.stats["fetch_served"] == 1 and c.stats["bytes_received"] == len(data)

    trio.run(main)


def test_fetch_refuses_wrong_bytes_oversize_bodies_and_missing_payloads():
    async def main():
        async with chain_of_nodes("a", "b") as (a, b):
            claimed = hashlib.sha256(b"what was announced").digest()
            a.store.put(Kind.DELTA, b"something else", key=claimed)
            with pytest.raises(FetchError, match="hash does not match"):
                await b.fetch(Kind.DELTA, claimed, 1000)
            assert b.stats["fetch_bad_payload"] == 1 and not b.store.has(Kind.DELTA, claimed)

            big = a.store.put(Kind.DELTA, b"x" * 5000)
            with pytest.raises(FetchError, match="over the 100-byte limit"):
                await b.fetch(Kind.DELTA, big, 100)
            assert b.stats["fetch_bad_payload"] == 2  # the offer alone names a bad peer
            with pytest.raises(FetchError, match="NOT_FOUND"):
                await b.fetch(Kind.MODEL, b"\x00" * 32, 100)
            # The server is still fine after all that.
            assert await b.fetch(Kind.DELTA, big, 5000) == b"x" * 5000

    trio.run(main)


def test_a_plaintext_only_peer_cannot_connect():
    async def main():
        async with chain_of_nodes("a") as (a,):
            kp = create_new_key_pair(hashlib.sha256(b"plain").digest())
            plain = new_host(key_pair=kp, sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(kp)})
            async with plain.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
                # The security handshake is refused (not a timeout: fail_after would raise
                # TooSlowError, which this does not match).
                with pytest.raises(SwarmDialAllFailedError, match="no addresses established"), \
                        trio.fail_after(10):
                    await plain.connect(info_from_p2p_addr(multiaddr.Multiaddr(a.addrs[0])))
                assert plain.get_id() not in a.connected()

    trio.run(main)


@pytest.mark.parametrize("cfg, message", [
    (NodeConfig(listen="/ip4/127.0.0.1/tcp/notaport"), "listen address"),
    (NodeConfig(bootstrap=("/ip4/127.0.0.1/tcp/4001",)), "must end in /p2p/"),
    (NodeConfig(bootstrap=("not a multiaddr",)), "bootstrap address 'not a multiaddr'"),
])
def test_bad_addresses_are_named_before_anything_starts(cfg, message):
    with pytest.raises(ValueError, match=message):
        Node(identity("a"), FLEET, cfg)


def test_a_node_stopped_by_cancellation_closes_its_listener():
    # Upstream skips its listener clean-up when cancelled; a zombie listener on the port would
    # take part of a restarted node's incoming connections and never answer them.
    import socket

    from chain.launch import free_port

    async def main():
        port = free_port()
        node = Node(identity("z"), FLEET, NodeConfig(listen=f"/ip4/127.0.0.1/tcp/{port}"))
        with trio.CancelScope() as scope:
            async with node.running(accept_all):
                scope.cancel()
                await trio.sleep_forever()
        with socket.socket() as s, pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.1", port))

    trio.run(main)


def _held_port():
    import socket

    from chain.launch import free_port

    port = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    return port, holder


def test_a_node_that_cannot_listen_fails_loudly_instead_of_running_deaf():
    from agent.exit_codes import FATAL, exit_code_for
    from agent.p2p.node import ListenError

    port, holder = _held_port()

    async def main():
        cfg = NodeConfig(listen=f"/ip4/127.0.0.1/tcp/{port}", listen_attempts=2,
                         listen_retry_s=0.01)
        async with Node(identity("deaf"), FLEET, cfg).running(accept_all):
            pass

    with holder, pytest.raises(BaseExceptionGroup) as e:  # from inside the node's nurseries
        trio.run(main)
    assert e.group_contains(ListenError, match=f"cannot listen on .*/tcp/{port}")
    leaf: BaseException = e.value
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    code = exit_code_for(leaf)
    assert code is not None and code not in FATAL  # systemd restarts it


def test_a_node_listens_once_its_port_is_freed():
    import logging

    port, holder = _held_port()

    class FreeOnFailure(logging.Handler):  # the other process lets go of the port
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("listen_failed"):
                holder.close()

    logger = logging.getLogger("agent.p2p.node")
    handler = FreeOnFailure()
    logger.addHandler(handler)

    async def main():
        cfg = NodeConfig(listen=f"/ip4/127.0.0.1/tcp/{port}", listen_retry_s=0.05)
        async with Node(identity("late"), FLEET, cfg).running(accept_all) as node:
            return node.addrs

    try:
        addrs = trio.run(main)
    finally:
        logger.removeHandler(handler)
        holder.close()
    assert any(a.startswith(f"/ip4/127.0.0.1/tcp/{port}") for a in addrs)
