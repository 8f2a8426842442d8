"""``vidviz quality``."""

from __future__ import annotations

from pathlib import Path


def _quality(a) -> int:
    import pandas as pd
    from tqdm import tqdm

    from vidviz.backend import Backend
    from vidviz.quality_report import run_quality, summary_wide
    from vidviz.store import store_dir

    b = Backend(a.checkpoint, a.data, device=a.device)
    out = Path(a.out) if a.out else store_dir(b.dataset, b.checkpoint_hash, a.split)
    n = len([r for r in b.dataset.split(a.split) if r.label is not None])
    bar = tqdm(total=min(n, a.max_clips) if a.max_clips else n, desc=f"quality {a.split}", unit="clip")
    summary, clips = run_quality(b, a.split, out, a.methods, a.max_clips, a.sanity_clips,
                                 progress=lambda d, t: bar.update(d - bar.n))
    bar.close()
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(summary_wide(summary).to_string())
    print("higher is better except deletion, deletion_frames and randomisation_rho; ± is a 95% CI; "
          f"{clips['clip'].nunique()} clips")
    print(f"wrote {out / 'quality.csv'} and {out / 'quality_clips.csv'}")
    return 0


def add_commands(sub, data_args) -> None:
    from vidviz import config

    p = sub.add_parser("quality", help="score saliency against ground truth and sanity checks")
    data_args(p)
    p.add_argument("--checkpoint", default=str(config.DEFAULT_CHECKPOINT))
    p.add_argument("--methods", nargs="+", default=["gradcam", "gradcam++"], choices=["gradcam", "gradcam++"])
    p.add_argument("--max-clips", type=int, default=None, help="score only the first N labelled clips")
    p.add_argument("--sanity-clips", type=int, default=3, help="clips for the randomisation check")
    p.add_argument("--out", default=None, help="folder for the CSVs (default: the split's store folder)")
    p.set_defaults(func=_quality)
