"""Run the saliency-quality metrics over a split and summarise them (``vidviz quality``, the quality page).

Per clip, the target is the true class; each method's map (and each baseline's) is scored with
the pointing game and energy share on the acted-on object's box and on the hand's box, with
temporal localisation against the action window, and with deletion/insertion AUCs. Per-clip
rows go to ``quality_clips.csv`` as they are computed (a rerun skips finished clips); the
summary (mean and 95% CI per method and metric) goes to ``quality.csv``.
"""

from __future__ import annotations

import io
import json
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from vidviz.data.io import atomic_write_bytes, atomic_write_json
from vidviz.explain import metrics as q
from vidviz.explain.cam import explain, upsample
from vidviz.explain.temporal import importance_curve
from vidviz.jobs.store import assign_cases, check_manifest, remove_leftovers, store_dir

BASELINES = ("random", "centre", "motion")
METRICS = ("pointing_object", "energy_object", "pointing_hand", "energy_hand", "pointing_action", "energy_action",
           "temporal_share", "temporal_peak", "deletion", "insertion", "deletion_frames")
HIGHER_IS_BETTER = {m: m not in ("deletion", "deletion_frames", "randomisation_rho", "seconds")
                    for m in (*METRICS, "randomisation_rho", "seconds")}
DIRECTIONS = "higher is better except deletion, deletion_frames, randomisation_rho and seconds (lower is better)"
#: metric -> (name, one-sentence definition). Every figure is scored against the clip's true class.
METRIC_INFO = {
    "pointing_object": ("Pointing, object", "Share of frames whose map peak lies inside the acted-on object's box."),
    "energy_object": ("Energy in object box", "Share of the map's positive mass inside the object's box, per frame."),
    "pointing_hand": ("Pointing, hand", "Share of frames whose map peak lies inside the hand's box."),
    "energy_hand": ("Energy in hand box", "Share of the map's positive mass inside the hand's box, per frame."),
    "pointing_action": ("Pointing, object or hand", "Share of frames whose map peak lies inside the acted-on "
                                                    "object's box or the hand's (the action's two actors)."),
    "energy_action": ("Energy in object or hand box", "Share of the map's positive mass inside the union of the "
                                                      "object's and the hand's boxes, per frame."),
    "temporal_share": ("Temporal share in action", "Share of the per-frame importance that falls inside the action window."),
    "temporal_peak": ("Temporal peak in action", "Share of clips whose most important frame lies inside the action window."),
    "deletion": ("Deletion AUC", "Mean class probability while the most salient voxels are replaced by the dataset's "
                                 "mean colour first."),
    "insertion": ("Insertion AUC", "Mean class probability while the most salient voxels are restored first."),
    "deletion_frames": ("Frame deletion AUC", "Mean class probability while whole frames are replaced by the mean "
                                              "colour, most important first."),
    "randomisation_rho": ("Randomisation rho", "Rank correlation of the map with the map of a fully randomised model "
                                                "(an explanation that ignores the model stays near 1)."),
    "seconds": ("Seconds per clip", "Time to compute one clip's map of the true class on this machine, the method's "
                                    "own forward pass included (not part of the mean rank)."),
}


def _boxes(per_frame, role: str, clip):
    """Per displayed frame, the box of ``role`` (the object acted on, or the hand) in displayed pixels, or None."""
    out = []
    for fb in per_frame:
        b = next((b for b in fb if b.role == role and (role != "object" or b.index == 0)), None)
        out.append(None if b is None else clip.to_display(b.xyxy))
    return out


def saliency_maps(backend, key: str, target: int, methods: list[str],
                  seconds: dict | None = None) -> dict[str, np.ndarray]:
    """Each method's and baseline's map of ``key`` at the displayed size (T, S0, S0), raw scale.

    ``seconds``, when given, receives each one's time on this clip: a method's from the clip's tensor, with
    its own forward (nothing cached), so that the methods' times compare.
    """
    opened = backend.open(key)
    frames = opened.clip.frames
    shape = (frames.shape[0], frames.shape[1], frames.shape[2])
    x = opened.x.to(backend.device)  # (1, 3, T, S, S)
    out = {}
    timed = {} if seconds is None else seconds
    for m in methods:
        t0 = time.perf_counter()
        raw = explain(backend.model, x, [target], m).map_for(target)  # (T', h, w)
        timed[m] = time.perf_counter() - t0
        out[m] = upsample(raw, shape)
    for name, make in (("random", lambda: q.random_map(shape, seed=zlib.crc32(key.encode()))),  # same in every process
                       ("centre", lambda: q.centre_prior(shape)), ("motion", lambda: q.motion_map(frames))):
        t0 = time.perf_counter()
        out[name] = make()
        timed[name] = time.perf_counter() - t0
    return out


def score_clip(backend, key: str, methods: list[str], steps: int = 8) -> list[dict]:
    ds = backend.dataset
    rec = ds.get(key)
    opened = backend.open(key)
    true = backend.true_class(key)  # the model's index of the true label (by name), or None
    target = true if true is not None else opened.top[0][0]
    boxes, window = backend.ground_truth(key)
    obj = _boxes(boxes, "object", opened.clip) if boxes else [None] * len(opened.clip.frames)
    hand = _boxes(boxes, "hand", opened.clip) if boxes else [None] * len(opened.clip.frames)
    action = [[b for b in (o, h) if b is not None] or None for o, h in zip(obj, hand, strict=True)]
    case = assign_cases(opened.logits[None], np.array([-1 if true is None else true]))[0][0]
    rows = []
    s = backend.spec.size
    seconds = {}
    for name, sal in saliency_maps(backend, key, target, methods, seconds).items():
        r = {"clip": key, "label": rec.template or "", "case": case, "method": name, "seconds": seconds[name]}
        r["pointing_object"] = q.pointing_game(sal, obj)[1]
        r["energy_object"] = q.energy_in_box(sal, obj)[1]
        r["pointing_hand"] = q.pointing_game(sal, hand)[1]
        r["energy_hand"] = q.energy_in_box(sal, hand)[1]
        r["pointing_action"] = q.pointing_game(sal, action)[1]
        r["energy_action"] = q.energy_in_box(sal, action)[1]
        curve = importance_curve(sal)
        if window is not None:
            r["temporal_share"], r["temporal_peak"] = q.temporal_localisation(curve, window)
        else:
            r["temporal_share"] = r["temporal_peak"] = float("nan")
        small = upsample(sal, (sal.shape[0], s, s))  # (T, S, S) at the model's input size
        r.update(q.deletion_insertion(backend.model, opened.x.to(backend.device), small, target, steps))
        rows.append(r)
    return rows


def sanity(backend, keys: list[str], methods: list[str]) -> list[dict]:
    """Model-parameter randomisation: Spearman of each method's map before/after full randomisation."""
    rows = []
    for key in keys:
        opened = backend.open(key)
        true = backend.true_class(key)
        target = true if true is not None else opened.top[0][0]
        x = opened.x.to(backend.device)
        for m in methods:
            res = q.randomisation_check(backend.model, x, target,
                                        lambda mod, xx, c, m=m: explain(mod, xx, [c], m).maps[0])
            rows.append({"clip": key, "method": m, "randomisation_rho": res[-1][1], "fails": q.fails_randomisation(res),
                         "cascade": json.dumps([[n, round(v, 4)] for n, v in res])})
        frames = opened.clip.frames
        motion = q.motion_map(frames)
        res = q.randomisation_check(backend.model, x, target, lambda mod, xx, c, motion=motion: motion)
        rows.append({"clip": key, "method": "motion", "randomisation_rho": res[-1][1], "fails": q.fails_randomisation(res),
                     "cascade": json.dumps([[n, round(v, 4)] for n, v in res])})
    return rows


def summarise(clips: pd.DataFrame, sanity_rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """mean and 95% CI of every metric per method."""
    out = []
    for method, g in clips.groupby("method", sort=False):
        for metric in METRICS:
            mean, half, n = q.mean_ci(g[metric].to_numpy(dtype=float))
            out.append({"method": method, "metric": metric, "mean": mean, "ci95": half, "n": n,
                        "higher_is_better": HIGHER_IS_BETTER[metric]})
    if "seconds" in clips.columns:  # time per clip (a method's own forward included)
        for method, g in clips.groupby("method", sort=False):
            mean, half, n = q.mean_ci(g["seconds"].to_numpy(dtype=float))
            out.append({"method": method, "metric": "seconds", "mean": mean, "ci95": half, "n": n,
                        "higher_is_better": False})
    if sanity_rows is not None and len(sanity_rows):
        for method, g in sanity_rows.groupby("method", sort=False):
            mean, half, n = q.mean_ci(g["randomisation_rho"].to_numpy(dtype=float))
            out.append({"method": method, "metric": "randomisation_rho", "mean": mean, "ci95": half, "n": n,
                        "higher_is_better": False})
    return pd.DataFrame(out)


def prepare_quality_dir(backend, split: str, out_dir: str | Path) -> Path:
    """Make ``out_dir`` for a quality run, or refuse one that holds a run of another model, dataset or split
    (a resumed run must not mix runs: the clips scored before were scored with this model on this data)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    want = {"version": 2, "checkpoint_hash": backend.checkpoint_hash,  # 2: deletion against the mean colour
            "dataset_fingerprint": backend.dataset.fingerprint(), "split": split}
    mp = out_dir / "quality_manifest.json"
    if not mp.is_file() and out_dir.resolve() == store_dir(backend.dataset, backend.checkpoint_hash, split).resolve():
        atomic_write_json(mp, want)  # the default folder is named by these settings: work from before the manifest
    check_manifest(out_dir, want, name=mp.name, work="quality_clips.jsonl")
    remove_leftovers(out_dir)
    return out_dir


def run_quality(backend, split: str, out_dir: str | Path, methods: list[str], max_clips: int | None = None,
                sanity_clips: int = 20, progress=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score ``split`` (resumable); returns (summary, per-clip rows) and writes both as CSV in ``out_dir``."""
    out_dir = prepare_quality_dir(backend, split, out_dir)
    parts = out_dir / "quality_clips.jsonl"
    done: dict[str, list[dict]] = {}
    if parts.is_file():
        for line in parts.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash: that clip is redone
            done.setdefault(r["clip"], []).append(r)
    want_methods = set(methods) | set(BASELINES)
    recs = [r for r in backend.dataset.split(split) if r.label is not None]
    if not recs:
        from vidviz.errors import DatasetError

        raise DatasetError(f"split {split!r} has no labelled clip to score (the scores need the true class)",
                           backend.dataset.root)
    if max_clips:
        recs = recs[:max_clips]
    with open(parts, "a") as fh:
        for i, rec in enumerate(recs):
            if rec.id in done and {r["method"] for r in done[rec.id]} >= want_methods:
                if progress:
                    progress(i + 1, len(recs))
                continue
            try:
                rows = score_clip(backend, rec.id, methods)
            except Exception as e:  # one bad clip does not stop the run
                rows = [{"clip": rec.id, "method": "error", "error": str(e)}]
            for r in rows:
                fh.write(json.dumps(r, default=float) + "\n")
            fh.flush()
            done[rec.id] = rows
            if progress:
                progress(i + 1, len(recs))
    rows = [r for rec in recs for r in done.get(rec.id, []) if r["method"] in want_methods]
    clips = pd.DataFrame(rows)
    failures = [(r.id, done[r.id][0].get("error", "")) for r in recs
                if done.get(r.id) and all(row["method"] == "error" for row in done[r.id])]
    buf = io.StringIO()
    pd.DataFrame(failures, columns=["clip", "error"]).to_csv(buf, index=False)
    atomic_write_bytes(out_dir / "quality_failures.csv", buf.getvalue().encode())  # every clip not scored, and why
    clips.attrs["failures"] = failures
    scored = [r.id for r in recs if any(row["method"] != "error" for row in done.get(r.id, []))]
    if not scored:
        from vidviz.errors import DatasetError

        first = next((rows_[0].get("error") for rows_ in done.values() if rows_ and rows_[0]["method"] == "error"), "")
        raise DatasetError(f"no clip of split {split!r} could be scored (first error: {first})", backend.dataset.root)
    san = pd.DataFrame(sanity(backend, scored[:sanity_clips], methods)) if sanity_clips else None  # decodable clips
    summary = summarise(clips, san)
    for name, df in (("quality.csv", summary), ("quality_clips.csv", clips)):
        buf = io.StringIO()
        df.to_csv(buf, index=False)
        atomic_write_bytes(out_dir / name, buf.getvalue().encode())
    if san is not None:
        buf = io.StringIO()
        san.to_csv(buf, index=False)
        atomic_write_bytes(out_dir / "quality_sanity.csv", buf.getvalue().encode())
    return summary, clips


def ranked_methods(summary: pd.DataFrame) -> pd.DataFrame:
    """Methods and baselines, best first: their mean rank over the quality metrics (direction-aware; 1 = best on
    every metric), then each metric as ``mean ± ci``, and the seconds per clip. Time does not enter the rank."""
    s = summary[summary["metric"].isin(METRICS)].copy()
    s = s[s["n"] > 0]
    s["rank"] = s.groupby("metric")["mean"].rank(ascending=False, method="average")
    flip = ~s["metric"].map(HIGHER_IS_BETTER).astype(bool)
    s.loc[flip, "rank"] = s[flip].groupby("metric")["mean"].rank(ascending=True, method="average")
    rank = s.groupby("method")["rank"].mean().rename("mean rank")
    wide = summary_wide(summary)
    out = pd.concat([rank, wide], axis=1).sort_values("mean rank")
    out["mean rank"] = out["mean rank"].round(2)
    out.index.name = "method"
    return out


def summary_wide(summary: pd.DataFrame) -> pd.DataFrame:
    """Methods as rows, metrics as columns, ``mean ± ci`` as text."""
    s = summary.copy()
    s["value"] = [f"{m:.3f} ± {c:.3f}" if np.isfinite(c) else f"{m:.3f}" for m, c in zip(s["mean"], s["ci95"], strict=True)]
    return s.pivot(index="method", columns="metric", values="value").reindex(
        columns=[m for m in (*METRICS, "randomisation_rho", "seconds") if m in set(s["metric"])])


def summary_by_metric(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per metric (name, better, definition), one column per method: ``mean ± ci (n)``; '-' where not scored."""
    methods = list(dict.fromkeys(summary["method"]))
    rows = []
    for metric in (*METRICS, "randomisation_rho", "seconds"):
        sub = summary[summary["metric"] == metric].set_index("method")
        if sub.empty:
            continue
        name, definition = METRIC_INFO[metric]
        row = {"metric": name, "better": "higher" if HIGHER_IS_BETTER[metric] else "lower"}
        for m in methods:
            if m in sub.index and int(sub.loc[m, "n"]) > 0:
                mean, ci, n = float(sub.loc[m, "mean"]), float(sub.loc[m, "ci95"]), int(sub.loc[m, "n"])
                row[m] = f"{mean:.3f} ± {ci:.3f} ({n})" if np.isfinite(ci) else f"{mean:.3f} ({n})"
            else:
                row[m] = "-"
        row["definition"] = definition
        rows.append(row)
    return pd.DataFrame(rows).set_index("metric")
