"""Checkpoint files: a state dict plus plain metadata, loaded with ``weights_only=True``.

Layout of a vidviz checkpoint (a dict saved with ``torch.save``)::

    format: "vidviz-checkpoint", version: 1
    arch: "i3d_resnet_tiny" | "i3d_resnet50" | one of torchvision's nine video models (TORCHVISION_ARCHS)
    arch_kwargs: dict of plain values (e.g. the ResNet3dConfig)
    classes: list[str]             class index -> template
    input_spec: dict               frames, fps, size, mean, std
    train_fingerprint: str         the training dataset's fingerprint
    metrics: dict                  measured accuracy etc.
    state_dict: dict[str, Tensor]
    weights_sha256: str            SHA-256 of the state dict (names, dtypes, shapes, bytes), verified on load

A folder written by Hugging Face's ``save_pretrained`` (``config.json`` + weights) is a checkpoint too
(:mod:`vidviz.models.hf`); :func:`load_checkpoint` opens either.

Nothing else is ever unpickled: a file carrying Python objects is refused. A checkpoint written before the
checksum existed loads without it; one whose weights do not match their checksum is refused.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch

from vidviz.data.io import atomic_write_bytes, file_hash
from vidviz.data.video import InputSpec
from vidviz.errors import CheckpointError
from vidviz.models.resnet3d import ResNet3dConfig, VideoClassifier, build_resnet3d, i3d_resnet50, i3d_resnet_tiny
from vidviz.models.torchvision_video import TORCHVISION_ARCHS, torchvision_key, torchvision_video
from vidviz.models.weights import load_state_strict, torch_load

FORMAT, VERSION = "vidviz-checkpoint", 1
ARCHS = ("i3d_resnet_tiny", "i3d_resnet50", *TORCHVISION_ARCHS)


def build_model(arch: str, classes: list[str], spec: InputSpec | None = None, arch_kwargs: dict | None = None) -> VideoClassifier:
    """Any vidviz architecture by name, with random weights."""
    arch_kwargs = arch_kwargs or {}
    if arch in ("i3d_resnet_tiny", "i3d_resnet50"):
        if "config" in arch_kwargs:
            model = build_resnet3d(ResNet3dConfig(**arch_kwargs["config"]), classes,
                                   spec or (i3d_resnet_tiny if arch == "i3d_resnet_tiny" else i3d_resnet50)([]).spec, arch)
            return model
        builder = i3d_resnet_tiny if arch == "i3d_resnet_tiny" else i3d_resnet50
        return builder(classes, spec) if spec else builder(classes)
    if arch in TORCHVISION_ARCHS:
        return torchvision_video(arch, classes, spec)
    raise CheckpointError(f"unknown architecture {arch!r} (known: {', '.join(ARCHS)})")


def weights_sha256(state: dict) -> str:
    """A checksum of a state dict: every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path: str | Path, model: VideoClassifier, train_fingerprint: str = "", metrics: dict | None = None,
                    extra: dict | None = None) -> Path:
    """Write ``model`` with its metadata, atomically."""
    payload = {
        "format": FORMAT, "version": VERSION, "arch": model.arch, "arch_kwargs": model.arch_kwargs,
        "classes": list(model.classes), "input_spec": model.spec.to_dict(),
        "train_fingerprint": train_fingerprint, "metrics": dict(metrics or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **(extra or {}),
    }
    payload["weights_sha256"] = weights_sha256(payload["state_dict"])
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's dict, validated (no model built)."""
    path = Path(path)
    obj = torch_load(path)
    if not isinstance(obj, dict):
        raise CheckpointError("not a vidviz checkpoint (expected a dict)", path)
    if obj.get("format") != FORMAT:
        raise CheckpointError("not a vidviz checkpoint (no 'format: vidviz-checkpoint'); "
                              "for torchvision weights use --arch with the weights file", path)
    for key in ("arch", "classes", "input_spec", "state_dict"):
        if key not in obj:
            raise CheckpointError(f"checkpoint lacks '{key}'", path)
    if obj["arch"] not in ARCHS:
        raise CheckpointError(f"unknown architecture {obj['arch']!r} (known: {', '.join(ARCHS)})", path)
    want = obj.get("weights_sha256")
    if want is not None:
        state = obj["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError("state_dict is not a mapping of names to tensors", path)
        if weights_sha256(state) != want:
            raise CheckpointError("its weights do not match the checksum stored with them "
                                  "(the file is damaged or was edited); use an intact copy", path)
    return obj


def load_checkpoint(path: str | Path, num_classes: int | None = None) -> VideoClassifier:
    """Build the model a checkpoint describes and load its weights (eval mode, CPU): a vidviz checkpoint
    file, or a Hugging Face ``save_pretrained`` folder.

    ``num_classes``, when given, must match the checkpoint's (e.g. the dataset's class count).
    """
    path = Path(path)
    if path.is_dir():
        from vidviz.models.hf import is_hf_folder, load_hf_folder

        if not is_hf_folder(path):
            raise CheckpointError("a folder, but not a Hugging Face model folder (no config.json)", path)
        model = load_hf_folder(path)
        if num_classes is not None and num_classes != model.num_classes:
            raise CheckpointError(f"model has {model.num_classes} classes but the dataset has {num_classes}", path)
        return model
    obj = read_checkpoint(path)
    classes = [str(c) for c in obj["classes"]]
    if num_classes is not None and num_classes != len(classes):
        raise CheckpointError(f"checkpoint has {len(classes)} classes but the dataset has {num_classes}", path)
    try:
        spec = InputSpec.from_dict(obj["input_spec"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"malformed input_spec ({e})", path) from None
    try:
        model = build_model(obj["arch"], classes, spec, obj.get("arch_kwargs") or {})
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"architecture settings (arch_kwargs) do not describe a model ({e})", path) from None
    state = obj["state_dict"]
    if obj["arch"] in TORCHVISION_ARCHS:  # written before torchvision models kept their own module paths
        state = {torchvision_key(k): v for k, v in state.items()}
    load_state_strict(model, state, path)
    model.metrics = dict(obj.get("metrics") or {})
    model.train_fingerprint = str(obj.get("train_fingerprint", ""))
    model.checkpoint_path = str(path)
    model.checkpoint_hash = file_hash(path)
    return model.eval()
