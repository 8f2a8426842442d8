"""Hugging Face ``transformers`` video classifiers behind the adapter interface (:mod:`vidviz.models.adapter`).

A folder written by ``model.save_pretrained(folder)`` (``config.json`` plus the weights) is a checkpoint
vidviz opens directly: class names from ``id2label``, the input spec from the config (frames, size) and from
``preprocessor_config.json`` when it is there (mean, std). Loading never reaches the network
(``local_files_only=True``).

============  ==================================  =========================  ===============================
model_type    layers offered (module paths)       token grid (from config)   default layer
============  ==================================  =========================  ===============================
videomae      videomae.encoder.layer.N            T/tubelet x H/p x W/p      the last layer (mean pooling)
timesformer   timesformer.encoder.layer.N         class + (H/p x W/p x T)    layer N-2: the last block's input
vivit         vivit.layers.N                      class + T/t x H/h x W/w    layer N-2: the last block's input
vjepa2        vjepa2.encoder.layer.N              T/tubelet x H/p x W/p      the last layer (attentive pooler)
============  ==================================  =========================  ===============================

A class-token model's classifier reads only the class token, so its last block's own output gets zero maps;
its default layer is the input of the last block. None of these heads is GAP + linear, so every map comes
from autograd (batched over classes with one backward).
"""

from __future__ import annotations

import json
from pathlib import Path

from vidviz.data.io import checkpoint_hash
from vidviz.data.video import InputSpec
from vidviz.errors import CheckpointError
from vidviz.models.adapter import HookedVideoModel, tokens_rule

#: model_type -> (attribute of the base model, whether a class token leads, time order of the tokens)
HF_TYPES = {"videomae": ("videomae", 0, "thw"), "timesformer": ("timesformer", 1, "hwt"),
            "vivit": ("vivit", 1, "thw"), "vjepa2": ("vjepa2", 0, "thw")}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def is_hf_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a ``config.json`` (a ``save_pretrained`` folder)."""
    return Path(path).is_dir() and (Path(path) / "config.json").is_file()


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"unreadable JSON ({str(e).splitlines()[0][:100]})", path) from None
    if not isinstance(obj, dict):
        raise CheckpointError("expected a JSON object", path)
    return obj


def _pair(v) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (list, tuple)) else (int(v), int(v))


def grid_of(cfg) -> tuple[int, int, int]:
    """The token grid (T', h, w) a model's config defines."""
    t = cfg.model_type
    if t == "videomae":
        (ih, iw), (ph, pw) = _pair(cfg.image_size), _pair(cfg.patch_size)
        return cfg.num_frames // cfg.tubelet_size, ih // ph, iw // pw
    if t == "timesformer":
        (ih, iw), (ph, pw) = _pair(cfg.image_size), _pair(cfg.patch_size)
        return cfg.num_frames, ih // ph, iw // pw
    if t == "vivit":
        (ih, iw), (tt, th, tw) = _pair(cfg.image_size), cfg.tubelet_size
        return cfg.num_frames // tt, ih // th, iw // tw
    return cfg.frames_per_clip // cfg.tubelet_size, cfg.crop_size // cfg.patch_size, cfg.crop_size // cfg.patch_size


def spec_of(cfg, folder: Path) -> InputSpec:
    """Frames and size from the config; mean and std from ``preprocessor_config.json`` (else ImageNet's)."""
    if cfg.model_type == "vjepa2":
        frames, size = int(cfg.frames_per_clip), int(cfg.crop_size)
    else:
        frames, size = int(cfg.num_frames), _pair(cfg.image_size)[0]
    mean, std = IMAGENET
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        p = _read_json(pre)
        mean, std = tuple(p.get("image_mean", mean)), tuple(p.get("image_std", std))
    return InputSpec(num_frames=frames, fps=4.0, size=size, mean=tuple(float(v) for v in mean),
                     std=tuple(float(v) for v in std), default_source_fps=12.0)


def _has(net, path: str) -> bool:
    try:
        net.get_submodule(path)
    except AttributeError:
        return False
    return True


def _quiet(transformers) -> None:
    """No download or loading progress bars, no advice printed: vidviz reports its own errors."""
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_hf_folder(folder: str | Path) -> HookedVideoModel:
    """A ``*ForVideoClassification`` saved with ``save_pretrained``, offline, behind the adapter interface."""
    folder = Path(folder)
    cfg_path = folder / "config.json"
    raw = _read_json(cfg_path)
    model_type = raw.get("model_type")
    if model_type not in HF_TYPES:
        raise CheckpointError(f"model_type {model_type!r} is not a video classifier vidviz explains "
                              f"(supported: {', '.join(HF_TYPES)})", cfg_path)
    if not any((folder / w).is_file() for w in WEIGHT_FILES):
        raise CheckpointError(f"no weights file ({' or '.join(WEIGHT_FILES[:2])}) next to config.json", folder)
    import transformers

    _quiet(transformers)
    try:
        cfg = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"config.json does not describe a {model_type} ({str(e).splitlines()[0][:120]})",
                              cfg_path) from None
    if model_type == "timesformer" and cfg.attention_type not in ("divided_space_time", "joint_space_time"):
        raise CheckpointError(f"TimeSformer attention_type {cfg.attention_type!r} folds time into the batch; "
                              "vidviz explains divided_space_time and joint_space_time", cfg_path)
    cls = getattr(transformers, transformers.models.auto.modeling_auto.MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES[model_type])
    try:
        net = cls.from_pretrained(folder, local_files_only=True)
    except Exception as e:  # transformers raises OSError, ValueError, RuntimeError, safetensors errors...
        reason = " ".join(str(e).split())[:160] or type(e).__name__
        raise CheckpointError(f"cannot load the {model_type} weights ({reason})", folder) from None
    id2label = getattr(cfg, "id2label", None) or {}
    classes = [str(id2label.get(i, id2label.get(str(i), f"class {i}"))) for i in range(int(cfg.num_labels))]
    base, prefix, order = HF_TYPES[model_type]
    blocks = next((p for p in ("encoder.layer", "encoder.layers", "layers", "layer") if _has(net, f"{base}.{p}")), None)
    if blocks is None:
        raise CheckpointError(f"found no list of encoder layers in this {model_type} (transformers "
                              f"{transformers.__version__})", folder)
    n = len(net.get_submodule(f"{base}.{blocks}"))
    layers = [f"{base}.{blocks}.{i}" for i in range(n)]
    default = layers[-2] if prefix and n > 1 else layers[-1]
    notes = ("The classifier reads only the class token, so the last layer's own output has zero maps; the "
             "default layer is the last layer's input." if prefix else "")
    model = HookedVideoModel(net.eval(), classes, spec_of(cfg, folder), f"hf:{model_type}", layers, default,
                             tokens_rule(prefix, grid_of(cfg), order), "BTCHW", logits_of=lambda out: out.logits,
                             head_modules=["classifier"], notes=notes)
    model.checkpoint_path, model.checkpoint_hash = str(folder), checkpoint_hash(folder)
    model.metrics, model.train_fingerprint = {}, ""
    return model.eval()

