"""A vehicle's libp2p host: Noise-only TCP, GossipSub announcements, and the fetch protocol.

The node knows nothing about rounds. It publishes and delivers announcements that pass the
validator its owner gives it, serves its content store, and fetches payloads from whichever
connected peer holds them. Every task it starts lives in its own nursery and ends with it.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.tools.anyio_service import background_trio_service

from agent.exit_codes import ExitCode
from agent.p2p import announce, attest
from agent.p2p.announce import Announcement, Fleet
from agent.p2p.attest import Attestation
from agent.p2p.fetch import PROTOCOL as FETCH_PROTOCOL
from agent.p2p.fetch import BadPayloadError, BusyError, FetchError, FetchServer, fetch_from
from agent.p2p.gate import Gate, GateConfig, GateNotifee
from agent.p2p.guards import GuardedPubsub, close_swarm, memoise_peer_records
from agent.p2p.identity import Identity, address_of_peer
from agent.p2p.schedule import Answer, FetchSchedule
from agent.p2p.store import ContentStore, Kind

log = logging.getLogger(__name__)

GOSSIP_PROTOCOLS = [TProtocol("/meshsub/1.1.0"), TProtocol("/meshsub/1.0.0")]
# Rejections an honest relay causes too: messages of a round that just ended, or before we
# joined; everything else counts against the forwarder.
BENIGN_REJECTIONS = frozenset({"stale_round", "not_ready", "other_round"})
# A reason to drop an announcement (or attestation), or None to accept it.
Validator = Callable[[Announcement], str | None]
AttestationValidator = Callable[[Attestation], str | None]


@dataclass(frozen=True)
class NodeConfig:
    listen: str = "/ip4/127.0.0.1/tcp/0"
    # A port held by another process (or a leftover of our own) may free up: try again, with
    # the wait doubling, before giving up into an exit that systemd restarts.
    listen_attempts: int = 5
    listen_retry_s: float = 1.0
    bootstrap: tuple[str, ...] = ()  # multiaddrs with /p2p/<peer id>
    mdns: bool = False
    redial_s: float = 2.0  # how often lost bootstrap peers are dialled again
    dial_timeout_s: float = 5.0
    max_concurrent_fetches: int = 4
    max_concurrent_serves: int = 16  # a payload wave of a 16-vehicle fleet without BUSY
    max_serves_per_peer: int = 2
    fetch_timeout_s: float = 30.0  # one deadline for a whole fetch, every peer asked included
    fetch_hedge_s: float = 5.0  # at least; ask another peer too if none answered by then
    fetch_parallel: int = 2  # peers asked at once for one payload
    gate: GateConfig = GateConfig()
    # Our own publishes count against this too (py-libp2p); a round needs one per vehicle.
    max_announcements_per_s: float = 200.0


class ListenError(Exception):
    """The node could not listen on its configured address (a port in use, an address this
    machine does not have). Not fatal: systemd restarts the learner, which tries again."""

    exit_code = ExitCode.P2P_LISTEN


def topic_for(fleet: Fleet, kind: str = "announce") -> str:
    """The fleet's gossip topic: chain ID in decimal, contract as 40 lowercase hex digits
    without 0x, ``announce`` or ``attest``."""
    return f"/swarmdrive/{fleet.chain_id}/{fleet.contract.hex()}/{kind}/1"


class Node:
    def __init__(self, identity: Identity, fleet: Fleet, cfg: NodeConfig = NodeConfig(),
                 store: ContentStore | None = None) -> None:
        """Raises ValueError naming a listen or bootstrap address that does not parse."""
        self.identity, self.fleet, self.cfg = identity, fleet, cfg
        self._listen = _multiaddr("listen address", cfg.listen)
        self._bootstrap = [_peer_info(a) for a in cfg.bootstrap]
        self.store = store or ContentStore()
        self.stats: Counter[str] = Counter()
        self.topic = topic_for(fleet)
        self.attest_topic = topic_for(fleet, "attest")
        self.host: IHost = new_host(
            key_pair=identity.key_pair, enable_mDNS=cfg.mdns,
            # Noise only: py-libp2p also offers /plaintext, TLS and secio by default.
            sec_opt={NOISE_PROTOCOL_ID: NoiseTransport(
                identity.key_pair, noise_privkey=new_x25519_key_pair().private_key)})
        # A vehicle receives each message once from every mesh peer that forwards it, so the
        # mesh's upper bound sets gossip's cost: upstream's 12, and its "adaptive" bounds that
        # grow further, made each vehicle of a 16-vehicle fleet take ~12 copies of every
        # announcement and attestation (the event loop's CPU grew 3.8x from 8 to 16
        # vehicles; 2.2x with these bounds, docs/scaling.md).
        self.gossip = GossipSub(
            protocols=GOSSIP_PROTOCOLS, degree=6, degree_low=4, degree_high=8,
            adaptive_gossip_enabled=False,
            heartbeat_interval=1, heartbeat_initial_delay=0.1,
            max_messages_per_topic_per_second=cfg.max_announcements_per_s)
        self.gate = Gate(cfg.gate, stats=self.stats)
        memoise_peer_records()
        self._clock = time.monotonic
        self.pubsub = GuardedPubsub(self.host, self.gossip, self.stats,
                                    lambda peer: self.gate.admits(peer, self._clock()))
        self.server = FetchServer(self.store, self.stats, cfg.max_concurrent_serves,
                                  cfg.fetch_timeout_s, cfg.max_serves_per_peer,
                                  lambda peer: self.gate.admits(peer, self._clock()))
        self._nursery: trio.Nursery | None = None
        self._fetch_slots = trio.CapacityLimiter(cfg.max_concurrent_fetches)
        self._answer_s: deque[float] = deque(maxlen=32)  # how long recent good answers took
        self._validate: Validator = lambda ann: "not_ready"
        self._validate_attestation: AttestationValidator = lambda att: "not_ready"
        send, self.announcements = trio.open_memory_channel[Announcement](1024)
        self._send = send
        send_att, self.attestations = trio.open_memory_channel[Attestation](1024)
        self._send_att = send_att

    @property
    def peer_id(self) -> ID:
        return self.host.get_id()

    @property
    def addrs(self) -> list[str]:
        return [str(a) for a in self.host.get_addrs()]

    @asynccontextmanager
    async def running(self, validate: Validator | None,
                      validate_attestation: AttestationValidator | None = None
                      ) -> AsyncIterator[Node]:
        """Listen, serve fetches and join the fleet's topics until the block exits: the
        announcement topic with ``validate``, the attestation topic with
        ``validate_attestation``. A topic without a validator is not joined, so no peer sends
        this node its messages (a seeding node joins neither)."""
        self.host.get_network().register_notifee(GateNotifee(self.gate, self._clock))
        async with self.host.run([self._listen]), background_trio_service(self.pubsub), \
                background_trio_service(self.gossip), trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._ensure_listening()
            await self.pubsub.wait_until_ready()
            self.host.set_stream_handler(FETCH_PROTOCOL, self.server.handle)
            if validate is not None:
                self._validate = validate
                self.pubsub.set_topic_validator(self.topic, self._gossip_validator, False)
                nursery.start_soon(self._receive, await self.pubsub.subscribe(self.topic))
            if validate_attestation is not None:
                self._validate_attestation = validate_attestation
                self.pubsub.set_topic_validator(self.attest_topic, self._attest_validator,
                                                False)
                nursery.start_soon(self._receive_attestations,
                                   await self.pubsub.subscribe(self.attest_topic))
            if self.cfg.bootstrap:
                nursery.start_soon(self._keep_bootstrapped)
            log.info("node_started peer=%s address=%s listen=%s", self.peer_id,
                     self.identity.address, ",".join(self.addrs))
            try:
                yield self
            finally:
                nursery.cancel_scope.cancel()
                await close_swarm(self.host)

    async def _ensure_listening(self) -> None:
        """A host whose listener failed runs on deaf (py-libp2p logs it and goes on): peers
        could not dial us and the vehicle would sit out every round unseen. Retry, then fail
        loudly."""
        wait = self.cfg.listen_retry_s
        for attempt in range(1, self.cfg.listen_attempts):
            if self.host.get_addrs():
                return
            log.warning("listen_failed address=%s attempt=%d of=%d retry_in_s=%.1f",
                        self._listen, attempt, self.cfg.listen_attempts, wait)
            await trio.sleep(wait)
            wait *= 2
            await self.host.get_network().listen(self._listen)
        if not self.host.get_addrs():
            raise ListenError(f"cannot listen on {self._listen}: the port is in use or the "
                              f"address is not this machine's "
                              f"({self.cfg.listen_attempts} tries)")

    # --- admission ----------------------------------------------------------------------------

    def set_allowed(self, addresses: Iterable[str]) -> None:
        """The addresses that may connect (registered vehicles and observers), from the chain;
        peers that lose the right are disconnected."""
        self.gate.allowed = frozenset(addresses)
        now = self._clock()
        for peer in self.connected():
            if self.gate.admits(peer, now) is not None:
                self._disconnect(peer, "no longer admitted")

    def _disconnect(self, peer: ID, why: str) -> None:
        if self._nursery is None:
            return
        log.info("peer_disconnected peer=%s reason=%s", peer, why)
        self._nursery.start_soon(self._close_peer, peer)

    async def _close_peer(self, peer: ID) -> None:
        try:
            await self.host.disconnect(peer)
        except Exception as e:  # already gone
            log.debug("disconnect_failed peer=%s error=%s", peer, e)

    # --- gossip -------------------------------------------------------------------------------

    def _gossip_validator(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        try:
            ann = announce.parse(msg.data)
        except announce.AnnounceError as e:
            return self._reject("malformed", forwarder, str(e))
        if ann.fleet != self.fleet:
            return self._reject("other_fleet", forwarder, ann.sender)
        reason = self._validate(ann)
        if reason is not None:
            return self._reject(reason, forwarder, f"{ann.sender} round={ann.round}")
        return self._accept(forwarder)

    def _attest_validator(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        try:
            att = attest.parse(msg.data)
        except attest.AttestError as e:
            return self._reject("malformed", forwarder, str(e), "attestation")
        if att.fleet != self.fleet:
            return self._reject("other_fleet", forwarder, att.signer, "attestation")
        reason = self._validate_attestation(att)
        if reason is not None:
            return self._reject(reason, forwarder, f"{att.signer} round={att.round}",
                                "attestation")
        return self._accept(forwarder)

    def _accept(self, forwarder: ID) -> bool:
        self._penalise(forwarder, valid=True)
        return True

    def _reject(self, reason: str, forwarder: ID, detail: str, what: str = "announce") -> bool:
        self.stats[f"{what}_rejected_{reason}"] += 1
        log.info("%s_rejected reason=%s forwarder=%s %s", what, reason, forwarder, detail)
        # Honest relays forward stale and early messages too; anything else is the forwarder's
        # fault (it must validate before relaying, as we do).
        self._penalise(forwarder, valid=reason in BENIGN_REJECTIONS)
        return False

    def _penalise(self, forwarder: ID, valid: bool) -> None:
        if forwarder == self.peer_id:
            return
        if self.gate.gossip(forwarder, valid, self._clock()) is not None:
            self._disconnect(forwarder, "banned")

    async def _receive(self, sub: object) -> None:
        while True:
            msg = await sub.get()  # type: ignore[attr-defined]
            try:
                ann = announce.parse(msg.data)
            except announce.AnnounceError:  # cannot happen after the validator; stay safe
                continue
            self.stats["bytes_received"] += len(msg.data)
            self.store.put(Kind.ANNOUNCEMENT, ann.raw, key=ann.payload_hash)
            try:
                self._send.send_nowait(ann)
            except trio.WouldBlock:
                self.stats["announce_dropped_backlog"] += 1

    async def _receive_attestations(self, sub: object) -> None:
        while True:
            msg = await sub.get()  # type: ignore[attr-defined]
            try:
                att = attest.parse(msg.data)
            except attest.AttestError:  # cannot happen after the validator; stay safe
                continue
            try:
                self._send_att.send_nowait(att)
            except trio.WouldBlock:
                self.stats["attestation_dropped_backlog"] += 1

    async def publish_attestation(self, att: Attestation) -> None:
        await self.pubsub.publish(self.attest_topic, att.raw)
        self.stats["bytes_sent"] += len(att.raw) * len(self.connected())

    async def publish(self, ann: Announcement) -> None:
        self.store.put(Kind.ANNOUNCEMENT, ann.raw, key=ann.payload_hash)
        await self.pubsub.publish(self.topic, ann.raw)
        self.stats["bytes_sent"] += len(ann.raw) * len(self.connected())

    # --- peers --------------------------------------------------------------------------------

    def connected(self) -> list[ID]:
        return list(self.host.get_connected_peers())

    def connected_addresses(self) -> set[str]:
        """Ethereum addresses of the peers we hold a connection to."""
        return {a for a in map(address_of_peer, self.connected()) if a is not None}

    async def _keep_bootstrapped(self) -> None:
        infos = [i for i in self._bootstrap if i.peer_id != self.peer_id]
        while True:
            connected = set(self.connected())
            for info in infos:
                if info.peer_id in connected or self.gate.admits(info.peer_id,
                                                                 self._clock()) is not None:
                    continue
                with trio.move_on_after(self.cfg.dial_timeout_s):
                    try:
                        await self.host.connect(info)
                        log.info("peer_connected peer=%s", info.peer_id)
                    except Exception as e:  # unreachable now; the next pass tries again
                        log.debug("dial_failed peer=%s error=%s", info.peer_id, e)
            await trio.sleep(self.cfg.redial_s)

    # --- fetch --------------------------------------------------------------------------------

    async def fetch(self, kind: Kind, key: bytes, max_size: int,
                    prefer: Iterable[ID] = (), timeout_s: float | None = None) -> bytes:
        """``key``'s payload, hash-checked, from the admitted peers that may hold it: ``prefer``
        (the announcer) first, then the others as ``FetchSchedule`` says (a BUSY peer again
        after a pause, a new one when one fails or answers are late), all within one deadline
        (``timeout_s``, default ``fetch_timeout_s``). Stored locally so that we can serve it
        too. Raises ``FetchError``."""
        have = self.store.get(kind, key)
        if have is not None:
            return have
        now = self._clock()
        admitted = [p for p in self.connected()
                    if p != self.peer_id and self.gate.admits(p, now) is None]
        peers = list(dict.fromkeys([*[p for p in prefer if p in admitted], *admitted]))
        if not peers:
            raise FetchError(f"{kind.name.lower()} {key.hex()[:16]}: no admitted peer connected")
        errors: list[tuple[bool, str]] = []  # (not forged, what): forgeries named first
        found: list[bytes] = []
        t0 = time.monotonic()
        async with self._fetch_slots:
            # Where a fetch's time goes, for benchmarks/round.py: queueing for a slot here ...
            t1 = time.monotonic()
            self.stats["fetch_slot_wait_ms"] += int(1000 * (t1 - t0))
            with trio.move_on_after(timeout_s or self.cfg.fetch_timeout_s) as deadline:
                await self._ask(peers, kind, key, max_size, found, errors)
        # ... and on the wire (including peers that did not answer)
        self.stats["fetch_wire_ms"] += int(1000 * (time.monotonic() - t1))
        if deadline.cancelled_caught and not found:
            self.stats["fetch_deadline"] += 1
        if not found:
            self.stats["fetch_failed"] += 1
            # Sorted: the same failures read the same (an alarm republishes a new detail).
            why = "; ".join(e for _, e in sorted(errors)[:4]) or "deadline passed"
            raise FetchError(f"{kind.name.lower()} {key.hex()[:16]}: no peer served it ({why})")
        body = found[0]
        self.stats["bytes_received"] += len(body)
        self.stats["fetched"] += 1
        self.store.put(kind, body, key=key)
        return body

    def hedge_s(self) -> float:
        """How long to wait for an answer before asking another peer too: ``fetch_hedge_s``,
        or three times the recent median answer when the fleet is slower than that (asking a
        second peer of a loaded fleet only loads it more), but never so long that fewer than
        three peers fit in a fetch's deadline."""
        if not self._answer_s:
            return self.cfg.fetch_hedge_s
        late = 3 * statistics.median(self._answer_s)
        return max(self.cfg.fetch_hedge_s, min(late, self.cfg.fetch_timeout_s / 3))

    async def _ask(self, peers: list[ID], kind: Kind, key: bytes, max_size: int,
                   found: list[bytes], errors: list[tuple[bool, str]]) -> None:
        """Ask ``peers`` as a ``FetchSchedule`` says until one serves ``key`` or none is left."""
        schedule = FetchSchedule(peers, self.hedge_s(), self.cfg.fetch_parallel)
        send, answers = trio.open_memory_channel[tuple[ID, Answer]](len(peers))
        async with trio.open_nursery() as nursery:
            while not (schedule.done or schedule.failed):
                for peer in schedule.due(trio.current_time()):
                    nursery.start_soon(self._fetch_one, peer, kind, key, max_size, found,
                                       errors, send)
                with trio.move_on_at(schedule.wake_at()):
                    peer, answer = await answers.receive()
                    schedule.answered(peer, answer, trio.current_time())
            nursery.cancel_scope.cancel()  # the first good answer ends the others

    async def _fetch_one(self, peer: ID, kind: Kind, key: bytes, max_size: int,
                         found: list[bytes], errors: list[tuple[bool, str]],
                         answers: trio.MemorySendChannel[tuple[ID, Answer]]) -> None:
        self.stats["fetch_asked"] += 1  # peers asked: over "fetched", the fetches' overhead
        t0 = trio.current_time()
        answer = Answer.FAILED
        try:
            stream = await self.host.new_stream(peer, [FETCH_PROTOCOL])
            found.append(await fetch_from(stream, kind, key, max_size))
            self._answer_s.append(trio.current_time() - t0)
            answer = Answer.OK
        except BusyError as e:
            self.stats["fetch_answered_busy"] += 1
            errors.append((True, f"{peer}: {e}"))
            answer = Answer.BUSY
        except BadPayloadError as e:
            self.stats["fetch_bad_payload"] += 1
            log.warning("fetch_bad_payload peer=%s key=%s error=%s", peer, key.hex()[:16], e)
            errors.append((False, f"{peer}: {e}"))
        except Exception as e:  # not found, dial, stream errors
            errors.append((True, f"{peer}: {type(e).__name__} {e}"))
        answers.send_nowait((peer, answer))


def _multiaddr(what: str, text: str) -> multiaddr.Multiaddr:
    try:
        return multiaddr.Multiaddr(text)
    except Exception as e:  # multiaddr raises several types for bad input
        raise ValueError(f"{what} {text!r}: {e}") from None


def _peer_info(text: str) -> PeerInfo:
    addr = _multiaddr("bootstrap address", text)
    try:
        return info_from_p2p_addr(addr)
    except Exception as e:
        raise ValueError(f"bootstrap address {text!r} must end in /p2p/<peer id>: {e}"
                         ) from None
