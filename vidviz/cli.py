"""The ``vidviz`` command: synth, train, evaluate, explain, precompute, quality, bench.

Every command prints plain progress; on bad input it prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from vidviz import config, runtime
from vidviz.errors import VidvizError


def _synth(a) -> int:
    from tqdm import tqdm

    from vidviz.data.synth import generate

    bar = tqdm(total=a.clips, desc="synth", unit="clip")

    def progress(done, total):
        bar.update(done - bar.n)

    s = generate(a.out, a.clips, a.seed, a.difficulty, workers=a.workers, progress=progress, hard=a.hard)
    bar.close()
    print(f"wrote {s['clips']} clips ({s['classes']} classes, seed {s['seed']}, difficulty {s['difficulty']}, "
          f"{s['hard_clips']} hard) "
          f"to {a.out} in {s['seconds']:.1f} s: {s['clips_per_s']:.1f} clips/s")
    return 0


def _open(a):
    from vidviz.data.datasets import open_dataset

    ds = open_dataset(a.data, getattr(a, "subset", None))
    for where, why in ds.problems[:20]:
        print(f"warning: skipped {where}: {why}", file=sys.stderr)
    if len(ds.problems) > 20:
        print(f"warning: {len(ds.problems) - 20} more problems not shown", file=sys.stderr)
    return ds


def _train(a) -> int:
    from vidviz.models.train import TrainConfig, train

    ds = _open(a)
    cfg = TrainConfig(arch=a.arch, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, workers=a.workers,
                      seed=a.seed, init_2d=a.init_2d, device=a.device, max_steps=a.max_steps)
    s = train(ds, a.out, cfg, resume=a.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"best validation top-1 {s['best_val_top1']:.3f} after {s['epochs']} epochs "
              f"({s['seconds'] / 60:.1f} min); checkpoint: {s['out']}")
    return 0


def _evaluate(a) -> int:
    import numpy as np

    from vidviz.models.train import evaluate, load_for_dataset

    ds = _open(a)
    model = load_for_dataset(a.checkpoint, ds)
    r = evaluate(model, ds, a.split, workers=a.workers, device=a.device)
    print(f"{a.split}: {r['clips']} clips, top-1 {100 * r['top1']:.1f}%, top-5 {100 * r['top5']:.1f}%")
    for name, acc in r["per_class"].items():
        print(f"  {100 * acc:5.1f}%  {name}")
    for cid, msg in r["failures"]:
        print(f"warning: skipped clip {cid}: {msg}", file=sys.stderr)
    if a.csv:
        import pandas as pd

        from vidviz.data.io import atomic_write_bytes

        df = pd.DataFrame(r["confusion"], index=ds.classes, columns=ds.classes)
        df.index.name = "true \\ predicted"
        atomic_write_bytes(a.csv, df.to_csv().encode())
        print(f"confusion matrix: {a.csv}")
    if a.json:
        from vidviz.data.io import atomic_write_json
        atomic_write_json(a.json, {k: v for k, v in r.items() if k != "confusion"} | {"confusion": np.asarray(r["confusion"]).tolist()})
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vidviz", description="Explore what video classifiers look at.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="generate a Something-Something-like dataset in the v2 layout")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--clips", type=int, default=config.DEFAULT_CLIPS, help="number of clips (default %(default)s)")
    s.add_argument("--seed", type=int, default=config.DEFAULT_SEED)
    s.add_argument("--difficulty", type=float, default=config.DEFAULT_DIFFICULTY,
                   help="0 = easy, 1 = default, 2 = hard")
    s.add_argument("--hard", type=float, default=config.DEFAULT_HARD,
                   help="share of hard clips (a brief action off the sampled window)")
    s.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    s.set_defaults(func=_synth)

    def data_args(q, split=True):
        q.add_argument("--data", default=str(config.DEFAULT_DATA), help="dataset root (default: the embedded default)")
        q.add_argument("--subset", default=None, help="file listing the templates of a class subset")
        q.add_argument("--workers", type=int, default=2, help="decoding processes")
        q.add_argument("--device", default="auto", help="auto, cpu or cuda")
        if split:
            q.add_argument("--split", default="test")

    t = sub.add_parser("train", help="train a model on a dataset")
    data_args(t, split=False)
    t.add_argument("--arch", default="i3d_resnet_tiny")
    t.add_argument("--out", required=True, help="checkpoint to write (the best on validation)")
    t.add_argument("--epochs", type=int, default=16)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--init-2d", default=None, help="torchvision ResNet-50 weights to inflate (i3d_resnet50)")
    t.add_argument("--resume", action="store_true", help="continue from the last finished epoch")
    t.add_argument("--max-steps", type=int, default=None, help=argparse.SUPPRESS)
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="top-1/top-5, per-class accuracy and confusion matrix")
    data_args(e)
    e.add_argument("--checkpoint", default=str(config.DEFAULT_CHECKPOINT))
    e.add_argument("--csv", default=None, help="also write the confusion matrix to this CSV file")
    e.add_argument("--json", default=None, help="also write all figures as JSON")
    e.set_defaults(func=_evaluate)

    from vidviz import cli_more

    cli_more.add_commands(sub, data_args)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    runtime.tune_allocator()
    try:
        return int(args.func(args) or 0)
    except VidvizError as e:
        print(f"vidviz: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
        print(f"vidviz: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vidviz: interrupted; rerun the same command to resume where it can", file=sys.stderr)
        return 130
    except Exception as e:  # an unexpected failure: one line on screen, the traceback in the log only
        if os.environ.get("VIDVIZ_DEBUG"):
            raise
        print(f"vidviz: internal error: {type(e).__name__}: {' '.join(str(e).split())[:300]} "
              f"(set VIDVIZ_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
