"""``vidviz explain``, ``precompute``, ``quality`` and ``bench``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vidviz import config


def resolve_class(name_or_index: str, classes: list[str]) -> int:
    """A class given as an index or a (case-insensitive) name/template."""
    s = str(name_or_index).strip()
    if s.lstrip("-").isdigit():
        c = int(s)
        if not 0 <= c < len(classes):
            raise ValueError(f"class index {c} is out of range (0..{len(classes) - 1})")
        return c
    low = s.lower()
    for i, c in enumerate(classes):
        if c.lower() == low or c.replace("[", "").replace("]", "").lower() == low:
            return i
    matches = [i for i, c in enumerate(classes) if low in c.lower()]
    if len(matches) == 1:
        return matches[0]
    raise ValueError(f"no class named {s!r}" + (f" ({len(matches)} partial matches; be more specific)" if matches else ""))


def format_top(top: list[tuple[int, float]], classes: list[str], k: int = 5) -> list[str]:
    """The seed's format: ``1. Putting [something]: 0.84``."""
    return [f"{i + 1}. {classes[c]}: {p:.2f}" for i, (c, p) in enumerate(top[:k])]


def _explain(a) -> int:
    from vidviz.backend import Backend
    from vidviz.data.io import atomic_write_bytes
    from vidviz.explain.temporal import importance_curve
    from vidviz.render import frame_grid, overlay, png_bytes, video_bytes

    target = Path(a.target)
    if target.is_file():  # any video a user has
        b = Backend(a.checkpoint, None, device=a.device)
        key = b.register_upload(target.name, target.read_bytes())
    else:  # a clip of the dataset
        b = Backend(a.checkpoint, a.data, device=a.device)
        key = str(a.target)
        b.dataset.get(key)  # a clear error for an unknown id
    opened = b.open(key)
    rec = b.record(key)
    if rec is not None and rec.template is not None:
        print(f"True label: {rec.template}")
    for line in format_top(opened.top, b.classes, a.top):
        print(line)
    cls = resolve_class(a.cls, b.classes) if a.cls is not None else opened.top[0][0]
    expl = b.explain(key, [cls], a.method, a.layer)
    raw = expl.map_for(cls)  # (T', h, w)
    shown = b.display_maps(raw, key)  # (T, S0, S0)
    ov = overlay(opened.clip.frames, shown, a.alpha)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{Path(key).name.replace(':', '_')}_{cls}_{a.method.replace('+', 'p')}"
    curve = importance_curve(raw, len(ov))
    labels = [f"{i + 1} {100 * v:.0f}%" for i, v in enumerate(curve)]
    atomic_write_bytes(out / f"{stem}_overlay.webm", video_bytes(ov, b.spec.fps))
    atomic_write_bytes(out / f"{stem}_grid.png", png_bytes(frame_grid(ov, cols=8, labels=labels)))
    buf = __import__("io").BytesIO()
    np.save(buf, raw.astype(np.float32))
    atomic_write_bytes(out / f"{stem}_maps.npy", buf.getvalue())
    print(f"explained class {cls} ({b.classes[cls]}) with {expl.method} at {expl.layer}; logit target")
    print(f"wrote {out / (stem + '_overlay.webm')}, {out / (stem + '_grid.png')}, {out / (stem + '_maps.npy')}")
    return 0


def _import_weights(a) -> int:
    from vidviz.models.checkpoint import load_torchvision_weights, save_checkpoint

    model = load_torchvision_weights(a.weights, a.arch)
    save_checkpoint(a.out, model, "", {"source": str(a.weights)})
    print(f"wrote {a.out}: {a.arch}, {len(model.classes)} classes (Kinetics-400), input {model.spec.to_dict()}")
    return 0


def add_commands(sub, data_args) -> None:
    w = sub.add_parser("import-weights", help="wrap a torchvision video-model weights file as a vidviz checkpoint")
    w.add_argument("--arch", required=True, choices=["r3d_18", "mc3_18", "r2plus1d_18"])
    w.add_argument("--weights", required=True, help="torchvision state dict (.pth) on disk")
    w.add_argument("--out", required=True, help="checkpoint to write, e.g. checkpoints/r3d_18.pt")
    w.set_defaults(func=_import_weights)

    e = sub.add_parser("explain", help="explain one clip (dataset id or any video file)")
    e.add_argument("target", help="a clip id of --data, or a path to a video file")
    data_args(e, split=False)
    e.add_argument("--checkpoint", default=str(config.DEFAULT_CHECKPOINT))
    e.add_argument("--class", dest="cls", default=None, help="class index or name (default: the top prediction)")
    e.add_argument("--method", default="gradcam", choices=["gradcam", "gradcam++"])
    e.add_argument("--layer", default=None, help="stem, layer1 ... layer4 (default: the last block)")
    e.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    e.add_argument("--top", type=int, default=5, help="predictions to print")
    e.add_argument("--out", default="explained", help="output folder")
    e.set_defaults(func=_explain)

    from vidviz import cli_store  # precompute / bench / quality

    cli_store.add_commands(sub, data_args)

