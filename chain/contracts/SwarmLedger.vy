# pragma version 0.4.3
"""
@title SwarmLedger
@notice Fleet membership, quorum-final swarm rounds and OTA releases for swarmdrive.
@dev The normative text is docs/spec/round-v2.md. Rules of this contract:
     - The operator registers and revokes vehicles and observers, sets fleet parameters within
       safe bounds and publishes or revokes releases. Nobody else can. The role moves in two
       steps (propose, accept), so a typo cannot hand the fleet to nobody.
     - A round is *committed* by the vehicle whose slot it is (see slot_holder), then *final*
       once a quorum of distinct registered vehicles has signed the same model hash. Only a
       final round counts: the next round builds on it. A commit that is not final within
       finalize_window seconds expires, and the round can be committed again.
     - A commitment names every contribution as (sender, samples, payload hash), senders
       registered and strictly ascending (so none counts twice): every verifier merges exactly
       the same inputs with the same weights. The entries and their Merkle root go in the
       RoundCommitted event (a log costs a tenth of storage; vehicles read the events anyway).
     - Attestation signatures are checked here with ecrecover and carried by one finalize
       transaction, instead of one transaction per attesting vehicle: for 8 vehicles at quorum 5
       that is ~2 transactions a round instead of 6 (see benchmarks/chain_gas.py).
"""

# A round merges at most this many deltas: a larger fleet commits a subset per round. Also a
# gas bound: Vyper sizes memory for the maximum, and EVM memory costs grow quadratically.
MAX_CONTRIBUTIONS: constant(uint256) = 64
MAX_SIGNATURES: constant(uint256) = 64
MAX_URI: constant(uint256) = 256
MAX_RELEASE_BYTES: constant(uint256) = 67108864  # 64 MiB: what a vehicle fetches at most
# secp256k1's group order over 2: a signature with a larger s is the malleable twin of a valid
# one, and is refused (EIP-2).
HALF_N: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168
ATTEST_DOMAIN: constant(Bytes[26]) = b"swarmdrive attestation v1\x00"
MAX_TIMING: constant(uint256) = 86400  # no round timing above a day
# Addresses one call to vehicles() or observers() returns at most: a joining vehicle reads the
# membership in a few calls, not one per member nor by replaying the registry's events.
MAX_PAGE: constant(uint256) = 256

struct Contribution:
    sender: address
    samples: uint32
    payload_hash: bytes32

struct Signature:
    v: uint8  # 27 or 28
    r: bytes32
    s: bytes32

struct Release:
    onnx_sha256: bytes32
    size: uint256
    source_round: uint256
    uri: String[MAX_URI]
    revoked: bool

event OperatorProposed:
    operator: indexed(address)
    proposed: indexed(address)

event OperatorTransferred:
    previous: indexed(address)
    operator: indexed(address)

event VehicleRegistered:
    vehicle: indexed(address)
    index: uint256

event VehicleRevoked:
    vehicle: indexed(address)

event ObserverSet:
    observer: indexed(address)
    allowed: bool

event ParamsSet:
    min_peers: uint256
    quorum: uint256
    round_timeout: uint256
    fallback_slot: uint256
    finalize_window: uint256

event RoundCommitted:
    round: indexed(uint256)
    committer: indexed(address)
    base_hash: bytes32
    model_hash: bytes32
    contributions_root: bytes32
    contributions: DynArray[Contribution, MAX_CONTRIBUTIONS]
    committed_at: uint256

event RoundFinalized:
    round: indexed(uint256)
    model_hash: bytes32
    signers: DynArray[address, MAX_SIGNATURES]
    finalized_at: uint256

event ReleasePublished:
    version: indexed(uint256)
    onnx_sha256: bytes32
    size: uint256
    source_round: uint256
    uri: String[MAX_URI]

event ReleaseRevoked:
    version: indexed(uint256)

operator: public(address)
proposed_operator: public(address)
genesis_hash: public(bytes32)

# Membership. vehicle_at[0 .. vehicle_count-1] is the committer rotation; a revoke moves the
# last vehicle into the freed place, so the order is the replay of the registry's events.
is_vehicle: public(HashMap[address, bool])
is_observer: public(HashMap[address, bool])
vehicle_at: public(HashMap[uint256, address])
vehicle_index: HashMap[address, uint256]
vehicle_count: public(uint256)
# The observers, kept the same way (a removal moves the last one into the freed place).
observer_at: public(HashMap[uint256, address])
observer_index: HashMap[address, uint256]
observer_count: public(uint256)

min_peers: public(uint256)
quorum: public(uint256)
round_timeout: public(uint256)  # seconds the first committer's slot lasts ...
fallback_slot: public(uint256)  # ... and each later slot
finalize_window: public(uint256)  # seconds a commit has to reach quorum

rounds_final: public(uint256)  # rounds 0 .. rounds_final - 1 are final; rounds_final is open
opened_at: public(uint256)  # when the open round opened: the last finalisation (or deploy)
round_model: public(HashMap[uint256, bytes32])  # final model of each round
# The open round's commit awaiting quorum, if pending_round == rounds_final and it has not
# expired. Never cleared: finalising moves rounds_final on, which retires it for free.
pending_round: public(uint256)
pending_model: public(bytes32)
pending_at: public(uint256)
attempts: public(uint256)  # commits of pending_round so far (all but the last expired)

release_count: public(uint256)
_releases: HashMap[uint256, Release]


@deploy
def __init__(genesis_hash: bytes32, min_peers: uint256, quorum: uint256, round_timeout: uint256,
             fallback_slot: uint256, finalize_window: uint256):
    assert genesis_hash != empty(bytes32), "genesis hash is zero"
    self.operator = msg.sender
    self.genesis_hash = genesis_hash
    self.opened_at = block.timestamp
    self.pending_round = max_value(uint256)  # nothing pending
    # No vehicle is registered yet: only the bounds that do not depend on the fleet's size.
    self._check_timing(round_timeout, fallback_slot, finalize_window)
    assert min_peers >= 1 and min_peers <= MAX_CONTRIBUTIONS, "min_peers must be 1 to 64"
    assert quorum >= 1 and quorum <= MAX_SIGNATURES, "quorum must be 1 to 64"
    self._set(min_peers, quorum, round_timeout, fallback_slot, finalize_window)
    log OperatorTransferred(previous=empty(address), operator=msg.sender)


# --- operator ---------------------------------------------------------------------------------

@internal
def _only_operator():
    assert msg.sender == self.operator, "only the operator"


@external
def propose_operator(new_operator: address):
    """@notice Step one of moving the operator role; the new operator must accept."""
    self._only_operator()
    assert new_operator != empty(address), "operator cannot be the zero address"
    self.proposed_operator = new_operator
    log OperatorProposed(operator=msg.sender, proposed=new_operator)


@external
def accept_operator():
    """@notice Step two: the proposed operator takes the role."""
    assert msg.sender == self.proposed_operator, "only the proposed operator"
    log OperatorTransferred(previous=self.operator, operator=msg.sender)
    self.operator = msg.sender
    self.proposed_operator = empty(address)


@external
def register(vehicle: address):
    self._only_operator()
    assert vehicle != empty(address), "vehicle cannot be the zero address"
    assert not self.is_vehicle[vehicle], "vehicle already registered"
    assert not self.is_observer[vehicle], "address is an observer"
    n: uint256 = self.vehicle_count
    self.is_vehicle[vehicle] = True
    self.vehicle_at[n] = vehicle
    self.vehicle_index[vehicle] = n
    self.vehicle_count = n + 1
    log VehicleRegistered(vehicle=vehicle, index=n)


@external
def revoke(vehicle: address):
    """@notice Always allowed (a stolen key must go at once); if fewer vehicles than the
    quorum remain, no round can finalise until the operator lowers the quorum."""
    self._only_operator()
    assert self.is_vehicle[vehicle], "vehicle is not registered"
    i: uint256 = self.vehicle_index[vehicle]
    last: uint256 = self.vehicle_count - 1
    if i != last:
        moved: address = self.vehicle_at[last]
        self.vehicle_at[i] = moved
        self.vehicle_index[moved] = i
    self.vehicle_at[last] = empty(address)
    self.vehicle_index[vehicle] = 0
    self.is_vehicle[vehicle] = False
    self.vehicle_count = last
    log VehicleRevoked(vehicle=vehicle)


@external
def set_observer(observer: address, allowed: bool):
    """@notice Observers may connect to the fleet's peers and read; they never commit or
    attest."""
    self._only_operator()
    assert observer != empty(address), "observer cannot be the zero address"
    assert not self.is_vehicle[observer], "address is a vehicle"
    n: uint256 = self.observer_count
    if allowed and not self.is_observer[observer]:
        self.observer_at[n] = observer
        self.observer_index[observer] = n
        self.observer_count = n + 1
    elif not allowed and self.is_observer[observer]:  # as revoke() does for vehicles
        i: uint256 = self.observer_index[observer]
        if i != n - 1:
            moved: address = self.observer_at[n - 1]
            self.observer_at[i] = moved
            self.observer_index[moved] = i
        self.observer_at[n - 1] = empty(address)
        self.observer_index[observer] = 0
        self.observer_count = n - 1
    self.is_observer[observer] = allowed
    log ObserverSet(observer=observer, allowed=allowed)


@view
@external
def vehicles(start: uint256, count: uint256) -> DynArray[address, MAX_PAGE]:
    """@notice vehicle_at(start), vehicle_at(start + 1), ...: at most count (at most 256) of
    them, fewer past the last registered vehicle."""
    assert count <= MAX_PAGE, "count must be at most 256"
    out: DynArray[address, MAX_PAGE] = []
    for i: uint256 in range(count, bound=MAX_PAGE):
        if start >= self.vehicle_count or i >= self.vehicle_count - start:
            break
        out.append(self.vehicle_at[start + i])
    return out


@view
@external
def observers(start: uint256, count: uint256) -> DynArray[address, MAX_PAGE]:
    """@notice observer_at(start), observer_at(start + 1), ...: as vehicles()."""
    assert count <= MAX_PAGE, "count must be at most 256"
    out: DynArray[address, MAX_PAGE] = []
    for i: uint256 in range(count, bound=MAX_PAGE):
        if start >= self.observer_count or i >= self.observer_count - start:
            break
        out.append(self.observer_at[start + i])
    return out


@internal
@pure
def _check_timing(round_timeout: uint256, fallback_slot: uint256, finalize_window: uint256):
    assert round_timeout >= 1 and round_timeout <= MAX_TIMING, "round_timeout must be 1 s to a day"
    assert fallback_slot >= 1 and fallback_slot <= MAX_TIMING, \
        "fallback_slot must be 1 s to a day"
    assert finalize_window >= 1 and finalize_window <= MAX_TIMING, \
        "finalize_window must be 1 s to a day"


@internal
def _set(min_peers: uint256, quorum: uint256, round_timeout: uint256, fallback_slot: uint256,
         finalize_window: uint256):
    self.min_peers = min_peers
    self.quorum = quorum
    self.round_timeout = round_timeout
    self.fallback_slot = fallback_slot
    self.finalize_window = finalize_window
    log ParamsSet(min_peers=min_peers, quorum=quorum, round_timeout=round_timeout,
                  fallback_slot=fallback_slot, finalize_window=finalize_window)


@external
def set_params(min_peers: uint256, quorum: uint256, round_timeout: uint256,
               fallback_slot: uint256, finalize_window: uint256):
    """@notice Bounds: 1 <= min_peers <= min(vehicles, 64); a strict majority of the vehicles
    <= quorum <= vehicles (two conflicting models can never both reach quorum)."""
    self._only_operator()
    n: uint256 = self.vehicle_count
    assert min_peers >= 1 and min_peers <= min(n, MAX_CONTRIBUTIONS), \
        "min_peers must be 1 to the registered vehicles (at most 64)"
    assert quorum > n // 2 and quorum <= min(n, MAX_SIGNATURES), \
        "quorum must be a majority of the registered vehicles, at most all of them"
    self._check_timing(round_timeout, fallback_slot, finalize_window)
    self._set(min_peers, quorum, round_timeout, fallback_slot, finalize_window)


# --- rounds -----------------------------------------------------------------------------------

@view
@external
def latest_model() -> bytes32:
    """@notice The model the open round starts from: the last final one."""
    if self.rounds_final == 0:
        return self.genesis_hash
    return self.round_model[self.rounds_final - 1]


@view
@internal
def _slot_holder(round: uint256, t: uint256) -> address:
    n: uint256 = self.vehicle_count
    if n == 0:
        return empty(address)
    origin: uint256 = self.opened_at
    offset: uint256 = 0
    if self.pending_round == round:  # an earlier commit of this round expired: start over
        origin = self.pending_at + self.finalize_window  # from the expiry, with the next vehicle
        offset = self.attempts
    start: uint256 = origin + self.round_timeout
    k: uint256 = 0
    if t >= start:
        k = (t - start) // self.fallback_slot
    return self.vehicle_at[(round + offset + k) % n]


@view
@external
def slot_holder(t: uint256) -> address:
    """@notice Who may commit the open round at time ``t`` while no commit is live. Slot 0
    lasts round_timeout + fallback_slot seconds from the round's opening, each later slot
    fallback_slot seconds, going round the registration order from index round. After an
    expired commit the slots start again from the expiry, one vehicle further on."""
    return self._slot_holder(self.rounds_final, t)


@view
@internal
def _pending_live() -> bool:
    return self.pending_round == self.rounds_final and \
        block.timestamp < self.pending_at + self.finalize_window


@view
@external
def pending_live() -> bool:
    """@notice Whether the open round has a commit awaiting quorum that has not expired."""
    return self._pending_live()


@pure
@internal
def _merkle_root(leaves: DynArray[bytes32, MAX_CONTRIBUTIONS]) -> bytes32:
    """Pairs hashed as keccak256(left ++ right) level by level; an odd last node moves up.
    Works in place on one buffer: copies of the array would each cost memory gas."""
    level: bytes32[MAX_CONTRIBUTIONS] = empty(bytes32[MAX_CONTRIBUTIONS])
    n: uint256 = len(leaves)
    for i: uint256 in range(MAX_CONTRIBUTIONS):
        if i >= n:
            break
        level[i] = leaves[i]
    for _depth: uint256 in range(7):  # 2**6 = MAX_CONTRIBUTIONS leaves need 6 levels
        if n <= 1:
            break
        for j: uint256 in range(MAX_CONTRIBUTIONS // 2):
            if 2 * j + 1 >= n:
                if 2 * j < n:
                    level[j] = level[2 * j]
                break
            level[j] = keccak256(concat(level[2 * j], level[2 * j + 1]))
        n = (n + 1) // 2
    return level[0]


@external
def commit_round(round: uint256, base_hash: bytes32, model_hash: bytes32,
                 contributions: DynArray[Contribution, MAX_CONTRIBUTIONS]):
    final: uint256 = self.rounds_final
    assert round >= final, "round already final"
    assert round == final, "round is not the open one"
    assert self.is_vehicle[msg.sender], "sender is not a registered vehicle"
    assert not self._pending_live(), "round has a commit awaiting quorum"
    assert self._slot_holder(round, block.timestamp) == msg.sender, "not this vehicle's slot"
    if self.pending_round == round:
        self.attempts += 1
    else:
        self.attempts = 1
    expected: bytes32 = self.genesis_hash
    if final > 0:
        expected = self.round_model[final - 1]
    assert base_hash == expected, "base hash is not the last final model"
    assert model_hash != empty(bytes32), "model hash is zero"
    assert model_hash != base_hash, "model hash equals the base: a no-op round"
    assert len(contributions) >= self.min_peers, "fewer contributions than min_peers"
    leaves: DynArray[bytes32, MAX_CONTRIBUTIONS] = []
    previous: uint256 = 0
    for c: Contribution in contributions:
        assert convert(c.sender, uint256) > previous, "senders must be strictly ascending"
        previous = convert(c.sender, uint256)
        assert self.is_vehicle[c.sender], "a contribution's sender is not registered"
        assert c.samples >= 1, "a contribution has no samples"
        assert c.payload_hash != empty(bytes32), "a contribution's payload hash is zero"
        leaves.append(keccak256(concat(convert(c.sender, bytes20), convert(c.samples, bytes4),
                                       c.payload_hash)))
    self.pending_round = round
    self.pending_model = model_hash
    self.pending_at = block.timestamp
    log RoundCommitted(round=round, committer=msg.sender, base_hash=base_hash,
                       model_hash=model_hash, contributions_root=self._merkle_root(leaves),
                       contributions=contributions, committed_at=block.timestamp)


@view
@external
def attestation_digest(round: uint256, model_hash: bytes32) -> bytes32:
    """@notice What a vehicle signs to attest that it recomputed ``model_hash`` for ``round``
    (raw secp256k1 over this digest, no EIP-191 prefix)."""
    return self._digest(round, model_hash)


@view
@internal
def _digest(round: uint256, model_hash: bytes32) -> bytes32:
    return keccak256(concat(ATTEST_DOMAIN, convert(chain.id, bytes32), convert(self, bytes20),
                            convert(round, bytes32), model_hash))


@external
def finalize_round(round: uint256, model_hash: bytes32,
                   signatures: DynArray[Signature, MAX_SIGNATURES]):
    """@notice Anyone may send the quorum's signatures; they are what is checked."""
    final: uint256 = self.rounds_final
    assert round >= final, "round already final"
    assert round == final, "round is not the open one"
    assert self._pending_live(), "no commit awaiting quorum"
    assert self.pending_model == model_hash, "model hash is not the pending commit's"
    assert len(signatures) >= self.quorum, "fewer signatures than the quorum"
    digest: bytes32 = self._digest(round, model_hash)
    signers: DynArray[address, MAX_SIGNATURES] = []
    previous: uint256 = 0
    for sig: Signature in signatures:
        assert sig.v == 27 or sig.v == 28, "signature v must be 27 or 28"
        assert convert(sig.s, uint256) <= HALF_N, "signature s is high (malleable)"
        signer: address = ecrecover(digest, sig.v, sig.r, sig.s)
        assert signer != empty(address), "a signature does not recover"
        assert convert(signer, uint256) > previous, "signers must be strictly ascending"
        previous = convert(signer, uint256)
        assert self.is_vehicle[signer], "a signer is not a registered vehicle"
        signers.append(signer)
    self.round_model[round] = model_hash
    self.rounds_final = final + 1
    self.opened_at = block.timestamp
    log RoundFinalized(round=round, model_hash=model_hash, signers=signers,
                       finalized_at=block.timestamp)


# --- releases ---------------------------------------------------------------------------------

@external
def publish_release(version: uint256, onnx_sha256: bytes32, size: uint256,
                    source_round: uint256, uri: String[MAX_URI]):
    self._only_operator()
    assert version == self.release_count + 1, "release version must be the next one"
    assert source_round < self.rounds_final, "source round is not final"
    assert onnx_sha256 != empty(bytes32), "release hash is empty"
    # The declared size bounds every download: a source that sends more is cut off.
    assert size >= 1 and size <= MAX_RELEASE_BYTES, "release size out of bounds"
    self._releases[version] = Release(onnx_sha256=onnx_sha256, size=size,
                                      source_round=source_round, uri=uri, revoked=False)
    self.release_count = version
    log ReleasePublished(version=version, onnx_sha256=onnx_sha256, size=size,
                         source_round=source_round, uri=uri)


@external
def revoke_release(version: uint256):
    self._only_operator()
    assert version >= 1 and version <= self.release_count, "no such release"
    assert not self._releases[version].revoked, "release already revoked"
    self._releases[version].revoked = True
    log ReleaseRevoked(version=version)


@view
@external
def release(version: uint256) -> Release:
    assert version >= 1 and version <= self.release_count, "no such release"
    return self._releases[version]
