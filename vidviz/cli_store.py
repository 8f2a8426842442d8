"""``vidviz precompute`` and ``vidviz bench`` (and ``quality`` when present)."""

from __future__ import annotations

import os


def _precompute(a) -> int:
    from tqdm import tqdm

    from vidviz.cli import _open
    from vidviz.models.train import load_for_dataset
    from vidviz.store import open_store, precompute

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not __import__("torch").distributed.is_initialized():
        import torch

        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    ds = _open(a)
    model = load_for_dataset(a.checkpoint, ds)
    rank = int(os.environ.get("RANK", "0"))
    bar = tqdm(total=len(ds.split(a.split)), desc=f"precompute {a.split}", unit="clip", disable=rank != 0)

    def progress(done, total):
        bar.update(done - bar.n)

    out = precompute(model, ds, a.split, a.out, k=a.k, batch_size=a.batch_size, workers=a.workers, device=a.device,
                     progress=progress, min_confidence=a.min_confidence, max_parts=a.max_parts, part_size=a.part_size)
    bar.close()
    if rank == 0:
        try:
            st = open_store(out, model.checkpoint_hash, ds.fingerprint())
        except Exception:
            print(f"partial store in {out}; rerun the same command to finish it")
            return 0
        c = st.counts()
        print(f"store: {out}\n{len(st.table)} clips: {c['positive']} positive, {c['medium']} medium, "
              f"{c['negative']} negative (k={st.meta['k']})")
    return 0


def add_commands(sub, data_args) -> None:
    from vidviz import config

    p = sub.add_parser("precompute", help="predictions and maps for a whole split (resumable)")
    data_args(p)
    p.add_argument("--checkpoint", default=str(config.DEFAULT_CHECKPOINT))
    p.add_argument("--out", default=None, help="store folder (default: keyed by checkpoint and dataset under stores/)")
    p.add_argument("--k", type=int, default=5, help="top-k maps to keep; medium = true class ranked 2..k")
    p.add_argument("--min-confidence", type=float, default=None, help="positives need at least this probability")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-parts", type=int, default=None, help="stop after this many parts (to test resuming)")
    p.add_argument("--part-size", type=int, default=64, help="clips per part (the unit of resuming and sharding)")
    p.set_defaults(func=_precompute)

    b = sub.add_parser("bench", help="benchmarks that print figures")
    b.add_argument("what", choices=["model", "explain", "app", "gallery", "precompute"])
    data_args(b, split=False)
    b.add_argument("--checkpoint", default=str(config.DEFAULT_CHECKPOINT))
    b.add_argument("--repeat", type=int, default=7)
    b.add_argument("--clips", type=int, default=220_847, help="store size for `bench gallery`")
    b.add_argument("--clip", default=None, help="clip id for `bench app`")
    b.set_defaults(func=_bench)

    from vidviz import cli_quality

    cli_quality.add_commands(sub, data_args)


def _bench(a) -> int:
    from vidviz import bench

    return bench.main(a)
