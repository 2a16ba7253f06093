"""Checkpoints: a plain dict with the weights, the config and what made them; atomic on disk.

The model hash (``models.layout.flat_hash``) names the same weights on every machine; the
chain records it and every vehicle recomputes it.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from models.atomic import atomic_write_bytes
from models.detector import DetConfig, FrameNet
from models.errors import CheckpointError
from models.layout import ModelLayout, flat_hash
from models.net import CropNet, NetConfig

FORMAT = "swarmdrive-checkpoint/1"
MAX_CHECKPOINT_BYTES = 256 << 20  # our models are a few MB; anything this large is not ours


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """The model hash of ``state`` (see ``models.layout.flat_hash``)."""
    layout = ModelLayout.of(state)
    return flat_hash(layout, layout.flatten(state))


def family(model: CropNet | FrameNet) -> str:
    """The checkpoint's name for the model's family."""
    return "detector" if isinstance(model, FrameNet) else "classifier"


def make_model(family_name: str, model_args: dict[str, Any]) -> CropNet | FrameNet:
    """A fresh model of a family from its config dict (as a checkpoint stores it)."""
    if family_name == "detector":
        args = dict(model_args)
        if "channels" in args:
            args["channels"] = tuple(args["channels"])
        return FrameNet(DetConfig(**args))
    if family_name == "classifier":
        return CropNet(NetConfig(**model_args))
    raise KeyError(f"unknown model family {family_name!r}")


def save_checkpoint(path: Path, model: CropNet | FrameNet, classes: tuple[str, ...],
                    meta: dict[str, Any] | None = None) -> str:
    """Write ``model`` to ``path`` atomically; returns its model hash."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    digest = state_hash(state)
    ckpt = {
        "format": FORMAT,
        "family": family(model),
        "model_args": asdict(model.config),
        "classes": list(classes),
        "state_dict": state,
        "model_hash": digest,
        "meta": meta or {},
    }
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    atomic_write_bytes(Path(path), buf.getvalue())
    return digest


def load_checkpoint(path: Path) -> tuple[CropNet | FrameNet, dict[str, Any]]:
    """The model in ``path`` (eval mode) and the checkpoint dict; ``CheckpointError`` if bad."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model {path}: no such file")
    if path.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"model {path}: larger than {MAX_CHECKPOINT_BYTES} bytes")
    try:
        # weights_only: a checkpoint from a peer or a disk must never run code.
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError,
            KeyError, IndexError, TypeError, AttributeError, UnicodeDecodeError, OSError):
        # torch.load reads a non-zip file as a legacy pickle stream: text or junk makes the
        # unpickler fail with whichever of these the first bytes lead to.
        raise CheckpointError(f"model {path}: not a torch checkpoint (corrupt, truncated, another "
                              "format, or holding objects other than tensors)") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"model {path}: not a swarmdrive checkpoint (expected {FORMAT})")
    try:
        # Checkpoints from before the detector carry no family: they are classifiers.
        model = make_model(ckpt.get("family", "classifier"), ckpt["model_args"])
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError, AssertionError) as e:
        raise CheckpointError(f"model {path}: weights do not fit the model ({_first_line(e)})") \
            from None
    if state_hash(ckpt["state_dict"]) != ckpt.get("model_hash"):
        raise CheckpointError(f"model {path}: weights do not match the recorded model hash")
    model.eval()
    return model, ckpt


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
