# pragma version 0.4.3
"""
@title SwarmLedger
@notice Fleet membership, swarm round commitments and OTA releases for swarmdrive.
@dev Rules of this contract:
     - The operator (the deployer, transferable) registers and revokes vehicles, sets fleet
       parameters and publishes or revokes releases. Nobody else can.
     - Registered vehicles commit rounds. Round r MUST be the next uncommitted round and its base
       hash MUST equal round r-1's model hash (the genesis hash for round 0): the chain of models
       has no gaps and no forks. The first valid commit for a round wins; later ones revert.
     - A commitment stores the round's model hash (what the next round must build on). The
       Merkle root of the contribution hashes (computed here, so it always matches them), the
       hashes themselves, the committer and the count are recorded in the RoundCommitted event:
       a log costs a tenth of storage, and followers read the events anyway.
     - Contribution hashes MUST be strictly ascending (the canonical order every vehicle merges
       in), which also rules out duplicates.
"""

# A round merges at most this many deltas: a larger fleet commits a subset per round. Also a
# gas bound: Vyper sizes memory for the maximum, and EVM memory costs grow quadratically.
MAX_CONTRIBUTIONS: constant(uint256) = 64
MAX_URI: constant(uint256) = 256

event OperatorTransferred:
    previous: indexed(address)
    operator: indexed(address)

event VehicleRegistered:
    vehicle: indexed(address)

event VehicleRevoked:
    vehicle: indexed(address)

event MinPeersSet:
    min_peers: uint256

event RoundCommitted:
    round: indexed(uint256)
    committer: indexed(address)
    base_hash: bytes32
    model_hash: bytes32
    contributions_root: bytes32
    contributions: DynArray[bytes32, MAX_CONTRIBUTIONS]

event ReleasePublished:
    version: indexed(uint256)
    onnx_sha256: bytes32
    source_round: uint256
    uri: String[MAX_URI]

event ReleaseRevoked:
    version: indexed(uint256)

struct Release:
    onnx_sha256: bytes32
    source_round: uint256
    uri: String[MAX_URI]
    revoked: bool

operator: public(address)
min_peers: public(uint256)
is_vehicle: public(HashMap[address, bool])
vehicle_count: public(uint256)
genesis_hash: public(bytes32)
rounds_committed: public(uint256)  # round numbers 0 .. rounds_committed - 1 are committed
round_model: public(HashMap[uint256, bytes32])
release_count: public(uint256)
_releases: HashMap[uint256, Release]


@deploy
def __init__(genesis_hash: bytes32, min_peers: uint256):
    assert min_peers >= 1, "min_peers must be at least 1"
    self.operator = msg.sender
    self.genesis_hash = genesis_hash
    self.min_peers = min_peers
    log OperatorTransferred(previous=empty(address), operator=msg.sender)
    log MinPeersSet(min_peers=min_peers)


@internal
def _only_operator():
    assert msg.sender == self.operator, "only the operator"


@external
def transfer_operator(new_operator: address):
    self._only_operator()
    assert new_operator != empty(address), "operator cannot be the zero address"
    log OperatorTransferred(previous=self.operator, operator=new_operator)
    self.operator = new_operator


@external
def register(vehicle: address):
    self._only_operator()
    assert vehicle != empty(address), "vehicle cannot be the zero address"
    assert not self.is_vehicle[vehicle], "vehicle already registered"
    self.is_vehicle[vehicle] = True
    self.vehicle_count += 1
    log VehicleRegistered(vehicle=vehicle)


@external
def revoke(vehicle: address):
    self._only_operator()
    assert self.is_vehicle[vehicle], "vehicle is not registered"
    self.is_vehicle[vehicle] = False
    self.vehicle_count -= 1
    log VehicleRevoked(vehicle=vehicle)


@external
def set_min_peers(min_peers: uint256):
    self._only_operator()
    assert min_peers >= 1, "min_peers must be at least 1"
    self.min_peers = min_peers
    log MinPeersSet(min_peers=min_peers)


@view
@external
def latest_model() -> bytes32:
    """@notice The model the next round starts from."""
    if self.rounds_committed == 0:
        return self.genesis_hash
    return self.round_model[self.rounds_committed - 1]


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
def commit_round(
    round: uint256,
    base_hash: bytes32,
    model_hash: bytes32,
    contributions: DynArray[bytes32, MAX_CONTRIBUTIONS],
):
    assert self.is_vehicle[msg.sender], "sender is not a registered vehicle"
    committed: uint256 = self.rounds_committed
    assert round >= committed, "round already committed"
    assert round == committed, "round is not the next one"
    expected: bytes32 = self.genesis_hash
    if committed > 0:
        expected = self.round_model[committed - 1]
    assert base_hash == expected, "base hash is not the previous model"
    assert len(contributions) >= self.min_peers, "fewer contributions than min_peers"
    for i: uint256 in range(1, MAX_CONTRIBUTIONS):
        if i >= len(contributions):
            break
        assert convert(contributions[i - 1], uint256) < convert(contributions[i], uint256), \
            "contributions must be strictly ascending"
    root: bytes32 = self._merkle_root(contributions)
    self.round_model[round] = model_hash
    self.rounds_committed = committed + 1
    log RoundCommitted(round=round, committer=msg.sender, base_hash=base_hash,
                       model_hash=model_hash, contributions_root=root,
                       contributions=contributions)


@external
def publish_release(version: uint256, onnx_sha256: bytes32, source_round: uint256,
                    uri: String[MAX_URI]):
    self._only_operator()
    assert version == self.release_count + 1, "release version must be the next one"
    assert source_round < self.rounds_committed, "source round is not committed"
    assert onnx_sha256 != empty(bytes32), "release hash is empty"
    self._releases[version] = Release(onnx_sha256=onnx_sha256, source_round=source_round,
                                      uri=uri, revoked=False)
    self.release_count = version
    log ReleasePublished(version=version, onnx_sha256=onnx_sha256, source_round=source_round,
                         uri=uri)


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
