"""The ``vidviz`` command: synth, train, evaluate, explain, precompute, quality, import-weights, bench.

One module: the parser (which imports nothing heavy, so ``vidviz --help`` starts without
torch) and one small function per command, each importing what it needs. Every command
prints plain progress; on bad input it prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from vidviz import config
from vidviz.errors import UsageError, VidvizError
from vidviz.explain.methods import INPUT_METHODS, METHODS, SETTINGS


def resolve_class(name_or_index: str, classes: list[str]) -> int:
    """A class given as an index or a (case-insensitive) name/template; a unique partial name also works."""
    s = str(name_or_index).strip()
    if s.lstrip("-").isdigit():
        c = int(s)
        if not 0 <= c < len(classes):
            raise UsageError(f"class index {c} is out of range (0..{len(classes) - 1})")
        return c
    low = s.lower()
    for i, c in enumerate(classes):
        if c.lower() == low or c.replace("[", "").replace("]", "").lower() == low:
            return i
    matches = [i for i, c in enumerate(classes) if low in c.lower()]
    if len(matches) == 1:
        return matches[0]
    raise UsageError(f"no class named {s!r}" + (f" ({len(matches)} partial matches; be more specific)" if matches else ""))


def _open_dataset(a):
    from vidviz.data.datasets import open_dataset

    ds = open_dataset(a.data, getattr(a, "subset", None))
    for where, why in ds.problems[:20]:
        print(f"warning: skipped {where}: {why}", file=sys.stderr)
    if len(ds.problems) > 20:
        print(f"warning: {len(ds.problems) - 20} more problems not shown", file=sys.stderr)
    return ds


def _progress_bar(total: int, desc: str, disable: bool = False):
    """A tqdm bar and a ``progress(done, total)`` callback that moves it."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="clip", disable=disable)
    _BARS.append(bar)
    return bar, lambda done, _total: bar.update(done - bar.n)


_BARS: list = []  # progress bars of this command: an error closes them first, so its line starts a line


def _end_bars() -> None:
    while _BARS:
        _BARS.pop().close()


# ---------------------------------------------------------------- commands

def _synth(a) -> int:
    from vidviz.data.synth import generate

    bar, progress = _progress_bar(a.clips, "synth")
    s = generate(a.out, a.clips, a.seed, a.difficulty, workers=a.workers, progress=progress, hard=a.hard)
    bar.close()
    print(f"wrote {s['clips']} clips ({s['classes']} classes, seed {s['seed']}, difficulty {s['difficulty']}, "
          f"{s['hard_clips']} hard) to {a.out} in {s['seconds']:.1f} s: {s['clips_per_s']:.1f} clips/s")
    return 0


def _train(a) -> int:
    from vidviz.models.train import TrainConfig, train
    from vidviz.runtime import dist_info

    ds = _open_dataset(a)
    cfg = TrainConfig(arch=a.arch, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, workers=a.workers,
                      seed=a.seed, init_2d=a.init_2d, device=a.device, max_steps=a.max_steps, guide=a.guide)
    s = train(ds, a.out, cfg, resume=a.resume)
    if dist_info()[0] == 0:
        print(f"best validation top-1 {s['best_val_top1']:.3f} after {s['epochs']} epochs "
              f"({s['seconds'] / 60:.1f} min); checkpoint: {s['out']}")
    return 0


def _evaluate(a) -> int:
    import numpy as np

    from vidviz.data.io import atomic_write_bytes, atomic_write_json
    from vidviz.models.train import evaluate, load_for_dataset

    ds = _open_dataset(a)
    model = load_for_dataset(a.checkpoint, ds)
    r = evaluate(model, ds, a.split, workers=a.workers, device=a.device)
    if r["failures"]:
        shown = "; ".join(f"{cid}: {why}" for cid, why in r["failures"][:3])
        print(f"warning: {len(r['failures'])} clip(s) could not be decoded and are not counted: {shown}"
              + (" ..." if len(r["failures"]) > 3 else ""), file=sys.stderr)
    if not r["clips"]:
        from vidviz.errors import DatasetError

        raise DatasetError(f"no clip of split {a.split!r} could be evaluated", ds.root)
    print(f"{a.split}: {r['clips']} clips, top-1 {100 * r['top1']:.1f}%, top-5 {100 * r['top5']:.1f}%")
    if r["unmatched"]:
        print(f"note: {r['unmatched']} labelled clips are not scored: the model has no class of their name")
    for name, acc in r["per_class"].items():
        print(f"  {100 * acc:5.1f}%  {name}")
    for cid, msg in r["failures"][3:]:  # every one of them, after the summary
        print(f"warning: skipped clip {cid}: {msg}", file=sys.stderr)
    if a.csv:
        import pandas as pd

        df = pd.DataFrame(r["confusion"], index=model.classes, columns=model.classes)
        df.index.name = "true \\ predicted"
        atomic_write_bytes(a.csv, df.to_csv().encode())
        print(f"confusion matrix: {a.csv}")
    if a.json:
        atomic_write_json(a.json, {k: v for k, v in r.items() if k != "confusion"}
                          | {"confusion": np.asarray(r["confusion"]).tolist()})
    return 0


def _explain(a) -> int:
    from vidviz.data.io import atomic_write_bytes
    from vidviz.data.video import VIDEO_EXTENSIONS, probe
    from vidviz.errors import VideoError

    target = Path(a.target)
    if target.is_dir():
        raise VideoError("is a folder, not a video file (give a video file, or a clip id with --data)", target)
    if not target.exists() and (target.is_absolute() or target.suffix.lower() in VIDEO_EXTENSIONS):
        raise VideoError("file not found", target)
    if target.is_file():
        probe(target)  # a file that is no readable video says so before torch and the model load (cached for later)
    from vidviz.backend import Backend
    from vidviz.render import export_bundle, format_top, overlay

    if target.is_file():  # any video a user has, read where it lies
        b = Backend(a.checkpoint, None, device=a.device)
        key = b.register_file(target)
    else:  # a clip of the dataset
        b = Backend(a.checkpoint, a.data, device=a.device)
        key = str(a.target)
        b.dataset.get(key)  # a clear error for an unknown id
    opened = b.open(key)
    rec = b.record(key)
    if opened.clip.padded:
        print(f"note: the video has {opened.clip.info.num_frames} frames, fewer than the model's window of "
              f"{b.spec.num_frames} at {b.spec.fps:g} fps: its last frame fills the last {opened.clip.padded}")
    if rec is not None and rec.template is not None:
        print(f"True label: {rec.template}")
    for line in format_top(opened.top, b.classes, a.top):
        print(line)
    cls = resolve_class(a.cls, b.classes) if a.cls is not None else opened.top[0][0]
    if a.method in INPUT_METHODS and a.layer is not None:
        raise UsageError(f"{a.method} attributes the input, not a layer: leave out --layer")
    names = {name for given in SETTINGS.values() for name in given}
    settings = {k: getattr(a, k) for k in sorted(names) if getattr(a, k) is not None}
    expl = b.explain(key, [cls], a.method, a.layer, settings or None)
    raw = expl.map_for(cls)  # (T', h, w)
    ov = overlay(opened.clip.frames, b.display_maps(raw, key), a.alpha)  # (T, S0, S0, 3)
    bundle = export_bundle(target.stem if key.startswith("file:") else key, cls, b.classes[cls], expl.method, expl.layer, ov, raw, b.spec.fps)
    out = Path(a.out)
    written = []
    for suffix, encode in bundle.files().items():
        if suffix == "_overlay.gif":
            continue  # the app offers the GIF; the CLI writes the lossless set
        atomic_write_bytes(out / f"{bundle.stem}{suffix}", encode())
        written.append(str(out / f"{bundle.stem}{suffix}"))
    inp = out / f"{bundle.stem}_input.npy"  # the exact tensor the model received, in its own layout
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, b.model.model_input(opened.x).numpy())  # (1, 3, T, S, S) or (1, T, 3, S, S): the model's layout
    atomic_write_bytes(inp, buf.getvalue())
    written.append(str(inp))
    print(f"explained class {cls} ({b.classes[cls]}) with {expl.method} at {expl.layer}; logit target")
    print("wrote " + ", ".join(written))
    return 0


def _import_weights(a) -> int:
    from dataclasses import replace

    from vidviz.models.checkpoint import save_checkpoint
    from vidviz.models.torchvision_video import kinetics_meta, load_torchvision_weights

    _, spec = kinetics_meta(a.arch)
    given = {"num_frames": a.frames, "size": a.size, "fps": a.fps}
    spec = replace(spec, **{k: v for k, v in given.items() if v is not None})
    if not spec.fps > 0:
        raise UsageError(f"--fps must be positive, not {a.fps}")
    model = load_torchvision_weights(a.weights, a.arch, spec)
    save_checkpoint(a.out, model, "", {"source": str(a.weights)})
    print(f"wrote {a.out}: {a.arch}, {len(model.classes)} classes (Kinetics-400), input {model.spec.to_dict()}, "
          f"layers {', '.join(model.layer_names)} (default {model.last_layer})")
    return 0


def _precompute(a) -> int:
    from vidviz.jobs.store import open_store, precompute
    from vidviz.models.train import load_for_dataset
    from vidviz.runtime import init_distributed

    rank, _ = init_distributed()
    ds = _open_dataset(a)
    model = load_for_dataset(a.checkpoint, ds)
    bar, progress = _progress_bar(len(ds.split(a.split)), f"precompute {a.split}", disable=rank != 0)
    out = precompute(model, ds, a.split, a.out, k=a.k, batch_size=a.batch_size, workers=a.workers, device=a.device,
                     progress=progress, min_confidence=a.min_confidence, max_parts=a.max_parts, part_size=a.part_size,
                     log=lambda m: print(f"warning: {m}", file=sys.stderr))
    bar.close()
    if rank == 0:
        try:
            st = open_store(out, model.checkpoint_hash, ds.fingerprint())
        except VidvizError:
            print(f"partial store in {out}; rerun the same command to finish it")
            return 0
        c = st.counts()
        print(f"store: {out}\n{len(st.table)} clips: {c['positive']} positive, {c['medium']} medium, "
              f"{c['negative']} negative (k={st.meta['k']})")
        failed = st.meta.get("failures") or []
        if failed:
            shown = "; ".join(f"{cid}: {why}" for cid, why in failed[:3])
            print(f"{len(failed)} clip(s) could not be decoded and are not in the store: {shown}"
                  + (" ..." if len(failed) > 3 else "") + f" (all in {out / 'meta.json'})", file=sys.stderr)
    return 0


def _quality(a) -> int:
    import pandas as pd

    from vidviz.backend import Backend
    from vidviz.errors import DatasetError
    from vidviz.jobs.quality import DIRECTIONS, prepare_quality_dir, ranked_methods, run_quality
    from vidviz.jobs.store import store_dir

    b = Backend(a.checkpoint, a.data, device=a.device)
    out = Path(a.out) if a.out else store_dir(b.dataset, b.checkpoint_hash, a.split)
    n = len([r for r in b.dataset.split(a.split) if r.label is not None])
    if n == 0:
        raise DatasetError(f"split {a.split!r} has no labelled clip to score (the scores need the true class)",
                           b.dataset.root)
    prepare_quality_dir(b, a.split, out)  # refuses a folder of another run before any work
    bar, progress = _progress_bar(min(n, a.max_clips) if a.max_clips else n, f"quality {a.split}")
    methods = list(METHODS) if "all" in a.methods else list(dict.fromkeys(a.methods))
    summary, clips = run_quality(b, a.split, out, methods, a.max_clips, a.sanity_clips, progress=progress)
    bar.close()
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(ranked_methods(summary).to_string())
    print(f"best first, by the mean rank over the quality metrics; {DIRECTIONS}; ± is a 95% CI; "
          f"{clips['clip'].nunique()} clips")
    print(f"wrote {out / 'quality.csv'} and {out / 'quality_clips.csv'}")
    failed = clips.attrs.get("failures") or []
    if failed:
        shown = "; ".join(f"{cid}: {why}" for cid, why in failed[:3])
        print(f"{len(failed)} clip(s) could not be scored: {shown}" + (" ..." if len(failed) > 3 else "")
              + f" (all in {out / 'quality_failures.csv'})", file=sys.stderr)
    return 0


BENCHES = ("model", "explain", "app", "gallery", "precompute", "browser", "memory", "methods", "models")
SCRIPTS = {"app": "app_bench.py", "browser": "browser_bench.py", "memory": "memory_bench.py"}  # others: bench.py


def _bench(a) -> int:
    """Benchmarks live in ``benchmarks/`` (outside the library's import graph); run them from the checkout."""
    script = config.PROJECT_ROOT / "benchmarks" / SCRIPTS.get(a.what, "bench.py")
    if not script.is_file():
        raise UsageError(f"`vidviz bench` runs the scripts in a source checkout's benchmarks/ folder; none at {script}")
    cmd = [sys.executable, str(script), *([] if a.what in SCRIPTS else [a.what]), "--data", a.data,
           "--checkpoint", a.checkpoint]
    if a.what == "app":
        cmd += ["--clip", a.clip] if a.clip else []
    elif a.what == "browser":
        cmd += ["--repeat", str(max(a.repeat, 30))]
    elif a.what == "memory":
        cmd += ["--clips", str(min(a.clips, 200))]
    else:
        cmd += ["--repeat", str(a.repeat), "--clips", str(a.clips), "--workers", str(a.workers), "--device", a.device]
        cmd += ["--models", *a.models] if a.models else []
    return subprocess.run(cmd).returncode


# ---------------------------------------------------------------- the parser

def _positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {v}")
    return v


def _data_args(q: argparse.ArgumentParser, split: bool = True, checkpoint: bool = True) -> None:
    q.add_argument("--data", default=str(config.DEFAULT_DATA), help="dataset root (default: the embedded default)")
    q.add_argument("--subset", default=None, help="file listing the templates of a class subset")
    q.add_argument("--workers", type=int, default=2, help="decoding processes")
    q.add_argument("--device", default="auto", help="auto, cpu or cuda")
    if split:
        q.add_argument("--split", default="test")
    if checkpoint:
        q.add_argument("--checkpoint", default=str(config.DEFAULT_CHECKPOINT))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vidviz", description="Explore what video classifiers look at.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="generate a Something-Something-like dataset in the v2 layout")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--clips", type=int, default=config.DEFAULT_CLIPS, help="number of clips (default %(default)s)")
    s.add_argument("--seed", type=int, default=config.DEFAULT_SEED)
    s.add_argument("--difficulty", type=float, default=config.DEFAULT_DIFFICULTY, help="0 = easy, 1 = default, 2 = hard")
    s.add_argument("--hard", type=float, default=config.DEFAULT_HARD,
                   help="share of hard clips (a brief action off the sampled window)")
    s.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    s.set_defaults(func=_synth)

    t = sub.add_parser("train", help="train a model on a dataset")
    _data_args(t, split=False, checkpoint=False)
    t.add_argument("--arch", default="i3d_resnet_tiny")
    t.add_argument("--out", required=True, help="checkpoint to write (the best on validation)")
    t.add_argument("--epochs", type=_positive, default=16)
    t.add_argument("--batch-size", type=_positive, default=16)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--init-2d", default=None, help="torchvision ResNet-50 weights to inflate (i3d_resnet50)")
    t.add_argument("--resume", action="store_true", help="continue from the last finished epoch")
    t.add_argument("--guide", type=float, default=0.0,
                   help="weight of the evidence-guidance loss: the share of the true class's evidence at the last "
                        "block outside the object/hand boxes of the action (needs boxes; 0 = off)")
    t.add_argument("--max-steps", type=int, default=None, help=argparse.SUPPRESS)
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="top-1/top-5, per-class accuracy and confusion matrix")
    _data_args(e)
    e.add_argument("--csv", default=None, help="also write the confusion matrix to this CSV file")
    e.add_argument("--json", default=None, help="also write all figures as JSON")
    e.set_defaults(func=_evaluate)

    x = sub.add_parser("explain", help="explain one clip (dataset id or any video file)")
    x.add_argument("target", help="a clip id of --data, or a path to a video file")
    _data_args(x, split=False)
    x.add_argument("--class", dest="cls", default=None, help="class index or name (default: the top prediction)")
    x.add_argument("--method", default="gradcam", choices=METHODS)
    x.add_argument("--layer", default=None, help="a module path of the model: stem, layer1 ... layer4 for vidviz and torchvision ResNets, norm or features.N for Swin, ...encoder.layer.N for Hugging Face (default: the last block)")
    for method, given in SETTINGS.items():  # each input method's settings (their ranges are checked on use)
        for name, st in given.items():
            x.add_argument(f"--{name}", type=type(st.default), default=None,
                           help=f"{method}: {st.meaning} (default {st.default:g})")
    x.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    x.add_argument("--top", type=int, default=5, help="predictions to print")
    x.add_argument("--out", default="explained", help="output folder")
    x.set_defaults(func=_explain)

    pc = sub.add_parser("precompute", help="predictions and maps for a whole split (resumable)")
    _data_args(pc)
    pc.add_argument("--out", default=None, help="store folder (default: keyed by checkpoint and dataset under stores/)")
    pc.add_argument("--k", type=_positive, default=5, help="top-k maps to keep; medium = true class ranked 2..k")
    pc.add_argument("--min-confidence", type=float, default=None, help="positives need at least this probability")
    pc.add_argument("--batch-size", type=_positive, default=8)
    pc.add_argument("--max-parts", type=int, default=None, help="stop after this many parts (to test resuming)")
    pc.add_argument("--part-size", type=_positive, default=64, help="clips per part (the unit of resuming and sharding)")
    pc.set_defaults(func=_precompute)

    q = sub.add_parser("quality", help="score saliency against ground truth and sanity checks")
    _data_args(q)
    q.add_argument("--methods", nargs="+", default=["gradcam", "gradcam++"], choices=[*METHODS, "all"],
                   help="methods to score next to the random, centre and motion baselines ('all': every method)")
    q.add_argument("--max-clips", type=_positive, default=None, help="score only the first N labelled clips")
    q.add_argument("--sanity-clips", type=int, default=20, help="clips for the randomisation check (default 20)")
    q.add_argument("--out", default=None, help="folder for the CSVs (default: the split's store folder)")
    q.set_defaults(func=_quality)

    w = sub.add_parser("import-weights", help="wrap a torchvision video-model weights file as a vidviz checkpoint")
    w.add_argument("--arch", required=True, choices=list(config.TORCHVISION_ARCHS))
    w.add_argument("--weights", required=True, help="torchvision state dict (.pth) on disk")
    w.add_argument("--out", required=True, help="checkpoint to write, e.g. checkpoints/r3d_18.pt")
    w.add_argument("--frames", type=_positive, default=None, help="frames per clip (default: torchvision's clip_len)")
    w.add_argument("--size", type=_positive, default=None, help="input side in pixels (default: torchvision's crop)")
    w.add_argument("--fps", type=float, default=None, help="sampling rate (default: torchvision's frame_rate)")
    w.set_defaults(func=_import_weights)

    b = sub.add_parser("bench", help="benchmarks that print figures (scripts in benchmarks/)")
    b.add_argument("what", choices=BENCHES)
    _data_args(b, split=False)
    b.add_argument("--repeat", type=int, default=7)
    b.add_argument("--models", nargs="+", default=None, help="for `bench models`: which adapters (default: all twelve)")
    b.add_argument("--clips", type=int, default=220_847, help="store size for `bench gallery`")
    b.add_argument("--clip", default=None, help="clip id for `bench app`")
    b.set_defaults(func=_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    from vidviz import runtime  # imports torch: only once a command runs

    runtime.tune_allocator()
    try:
        return int(args.func(args) or 0)
    except VidvizError as e:
        _end_bars()
        print(f"vidviz: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:  # a file that cannot be written (read-only, full disk, a file in the way)
        _end_bars()
        print(f"vidviz: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _end_bars()
        print("vidviz: interrupted; rerun the same command to resume where it can", file=sys.stderr)
        return 130
    except Exception as e:  # an unexpected failure: one line on screen, the traceback in the log only
        _end_bars()
        if os.environ.get("VIDVIZ_DEBUG"):
            raise
        import tempfile
        import traceback

        fd, log_path = tempfile.mkstemp(prefix="vidviz-error-", suffix=".log")
        with os.fdopen(fd, "w") as fh:
            fh.write(f"vidviz {' '.join(sys.argv[1:] if argv is None else argv)}\n{traceback.format_exc()}")
        print(f"vidviz: internal error: {type(e).__name__}: {' '.join(str(e).split())[:300]} "
              f"(a bug in vidviz: the traceback is in {log_path})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
