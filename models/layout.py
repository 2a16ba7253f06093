"""A model's weights as one flat float32 vector, in a fixed order every vehicle agrees on.

Deltas, merges and hashes all work on the flat vector; ``ModelLayout`` maps it back to named
tensors. The architecture id is a digest of the names and shapes: two vehicles with the same id
can exchange deltas.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    offset: int  # first element in the flat vector

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class ModelLayout:
    tensors: tuple[TensorSpec, ...]

    @staticmethod
    def of(state: dict[str, torch.Tensor]) -> ModelLayout:
        specs, offset = [], 0
        for name, t in state.items():  # state_dict order is fixed by the architecture
            if not t.is_floating_point():
                raise TypeError(f"tensor {name} has dtype {t.dtype}; only float weights merge")
            specs.append(TensorSpec(name, tuple(t.shape), offset))
            offset += t.numel()
        return ModelLayout(tuple(specs))

    @property
    def size(self) -> int:
        last = self.tensors[-1]
        return last.offset + last.numel

    @property
    def arch_id(self) -> bytes:
        """8 bytes naming the architecture (tensor names and shapes)."""
        h = hashlib.sha256()
        for t in self.tensors:
            h.update(f"{t.name}:{'x'.join(map(str, t.shape))};".encode())
        return h.digest()[:8]

    def flatten(self, state: dict[str, torch.Tensor]) -> np.ndarray:
        """(size,) float32 copy of ``state``."""
        out = np.empty(self.size, np.float32)
        for t in self.tensors:
            out[t.offset : t.offset + t.numel] = state[t.name].detach().cpu().reshape(-1).numpy()
        return out

    def unflatten(self, flat: np.ndarray) -> dict[str, torch.Tensor]:
        """Named tensors (copies) from a flat float32 vector."""
        assert flat.shape == (self.size,), f"expected ({self.size},), got {flat.shape}"
        return {t.name: torch.from_numpy(flat[t.offset : t.offset + t.numel].copy())
                .reshape(t.shape) for t in self.tensors}


def flat_hash(layout: ModelLayout, flat: np.ndarray) -> str:
    """The model hash: sha256 (hex) of the architecture id and the little-endian float32 weights.

    Checkpoints, ONNX metadata, round commitments and the chain all name a model by this.
    """
    return hashlib.sha256(model_bytes(layout, flat)).hexdigest()


def model_bytes(layout: ModelLayout, flat: np.ndarray) -> bytes:
    """The model as peers exchange it: what ``flat_hash`` hashes, so the hash checks the bytes."""
    return layout.arch_id + np.ascontiguousarray(flat, dtype="<f4").tobytes()


def model_from_bytes(layout: ModelLayout, data: bytes) -> np.ndarray:
    """Inverse of ``model_bytes``; ValueError if the bytes are for another architecture."""
    if len(data) != 8 + 4 * layout.size or data[:8] != layout.arch_id:
        raise ValueError(f"model bytes ({len(data)}) are not this architecture's "
                         f"({8 + 4 * layout.size} bytes, arch {layout.arch_id.hex()})")
    return np.frombuffer(data, "<f4", offset=8).astype(np.float32)
