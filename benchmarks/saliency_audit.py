"""Where do the default model's Grad-CAM maps go, and why? (the investigation of issue #18)

    python benchmarks/saliency_audit.py [--data DIR] [--checkpoint CKPT] [--split test] [--max-clips N]

Prints, over the split's labelled clips (the true class is the target, Grad-CAM at the last block):

1. **The metric itself**, on maps that are right by construction: a map that is 1 inside the object's box and
   0 elsewhere (it must point at the object in every frame), and the same map pooled to the model's last-block
   grid and upsampled back as Grad-CAM is (the ceiling the map's resolution allows).
2. **Where each frame's Grad-CAM peak lies**: in the object's box, the hand's, a distractor's, on the grid's
   border cells, or elsewhere (background, the arm included: it has no box), per class.
3. **What the baselines find**, per class: pointing at the object for Grad-CAM, centre and motion.
4. **Where a last-block cell looks**: the centre of mass of |d cell / d input| (its effective receptive field)
   against the cell's centre as the upsampled map places it, for the trained model and the same architecture at
   initialisation (an offset there comes from the architecture: the strides' sampling positions).
5. **Other layers and methods**: pointing at the object and at the hand for Grad-CAM at layer2 ... layer4,
   LayerCAM and Eigen-CAM.
6. **The deletion metric's baseline**: the true class's probability on the clips, on the clips blurred as the
   "blur" baseline blurs them, and on clips of the mean colour; deletion and insertion of Grad-CAM and of a
   random map with either baseline (a baseline that leaves the model its evidence cannot rank maps).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch

from vidviz import config
from vidviz.backend import Backend
from vidviz.explain import metrics as q
from vidviz.explain.cam import upsample
from vidviz.jobs.quality import _boxes


def _role_boxes(per_frame, role, clip):
    return [[clip.to_display(b.xyxy) for b in fb if b.role == role] for fb in per_frame]


def _inside(box, y, x) -> bool:
    return box is not None and box[0] <= x < box[2] and box[1] <= y < box[3]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(config.DEFAULT_DATA))
    p.add_argument("--checkpoint", default=str(config.DEFAULT_CHECKPOINT))
    p.add_argument("--split", default="test")
    p.add_argument("--max-clips", type=int, default=None)
    a = p.parse_args(argv)
    b = Backend(a.checkpoint, a.data)
    recs = [r for r in b.dataset.split(a.split) if r.label is not None][:a.max_clips]
    where = defaultdict(lambda: defaultdict(int))  # class -> place -> frames
    point = defaultdict(lambda: defaultdict(list))  # class -> map -> per-clip pointing at the object
    oracle, oracle_grid = [], []
    for rec in recs:
        key = rec.id
        opened = b.open(key)
        true = b.true_class(key)
        frames = opened.clip.frames
        t, s0 = frames.shape[0], frames.shape[1]
        boxes, _ = b.ground_truth(key)
        if not boxes:
            continue
        obj = _boxes(boxes, "object", opened.clip)
        hand = _boxes(boxes, "hand", opened.clip)
        dist = _role_boxes(boxes, "distractor", opened.clip)
        raw = b.explain(key, [true]).map_for(true)  # (T', h, w)
        gh = raw.shape[1]
        sal = upsample(raw, (t, s0, s0))  # (T, S0, S0)
        # 1. the metric on right-by-construction maps
        ideal = np.stack([q.box_mask((s0, s0), bx) if bx is not None else np.zeros((s0, s0), bool) for bx in obj])
        ideal = ideal.astype(np.float32)  # (T, S0, S0)
        oracle.append(q.pointing_game(ideal, obj)[1])
        pooled = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(ideal)[:, None], gh)[:, 0].numpy()
        oracle_grid.append(q.pointing_game(upsample(pooled, (t, s0, s0)), obj)[1])
        # 2. where the peak lies
        for f in range(t):
            y, x = np.unravel_index(int(np.argmax(sal[f])), sal[f].shape)
            cell = s0 / gh
            gy, gx = int(y // cell), int(x // cell)
            if _inside(obj[f], y, x):
                place = "object"
            elif _inside(hand[f], y, x):
                place = "hand"
            elif any(_inside(d, y, x) for d in dist[f]):
                place = "distractor"
            elif gy in (0, gh - 1) or gx in (0, gh - 1):
                place = "border cell"
            else:
                place = "background"
            where[rec.label][place] += 1
        # 3. the baselines, per class
        point[rec.label]["gradcam"].append(q.pointing_game(sal, obj)[1])
        point[rec.label]["centre"].append(q.pointing_game(q.centre_prior((t, s0, s0)), obj)[1])
        point[rec.label]["motion"].append(q.pointing_game(q.motion_map(frames), obj)[1])
    print(f"{len(oracle)} clips of {a.split}, checkpoint {a.checkpoint}")
    print(f"1. pointing at the object of a map that is its box: {np.nanmean(oracle):.3f}; "
          f"the same pooled to the {gh}x{gh} grid and upsampled: {np.nanmean(oracle_grid):.3f}")
    places = ["object", "hand", "distractor", "border cell", "background"]
    print("2. where each frame's Grad-CAM peak lies (share of frames)")
    print(f"   {'class':52s} " + " ".join(f"{pl:>11s}" for pl in places))
    tot = defaultdict(int)
    for c in sorted(where):
        n = sum(where[c].values())
        for pl in places:
            tot[pl] += where[c][pl]
        print(f"   {b.dataset.classes[c][:52]:52s} " + " ".join(f"{where[c][pl] / n:11.2f}" for pl in places))
    n = sum(tot.values())
    print(f"   {'all':52s} " + " ".join(f"{tot[pl] / n:11.2f}" for pl in places))
    print("3. pointing at the object, per class")
    print(f"   {'class':52s} {'gradcam':>8s} {'centre':>8s} {'motion':>8s}")
    for c in sorted(point):
        print(f"   {b.dataset.classes[c][:52]:52s} " + " ".join(f"{np.nanmean(point[c][m]):8.2f}"
                                                           for m in ("gradcam", "centre", "motion")))
    print("4. where a last-block cell looks (frame 8, 4 random clips): ERF centre vs the cell's centre, input px")
    for name, m in (("trained", b.model), ("at initialisation", _init_like(b.model))):
        print(f"   {name:18s} " + "; ".join(f"cell {c}: ({cy:.1f}, {cx:.1f}) vs ({ey:.1f}, {ex:.1f})"
                                          for c, (cy, cx), (ey, ex) in _erf_centres(m)))
    print("5. pointing at the object / at the hand, other layers and methods")
    for method, layer in (("gradcam", "layer4"), ("gradcam", "layer3"), ("gradcam", "layer2"), ("layercam", "layer4"),
                          ("eigencam", "layer4")):
        po, ph = [], []
        for rec in recs:
            opened, true = b.open(rec.id), b.true_class(rec.id)
            boxes, _ = b.ground_truth(rec.id)
            t, s0 = opened.clip.frames.shape[:2]
            up = upsample(b.explain(rec.id, [true], method, layer).map_for(true), (t, s0, s0))
            po.append(q.pointing_game(up, _boxes(boxes, "object", opened.clip))[1])
            ph.append(q.pointing_game(up, _boxes(boxes, "hand", opened.clip))[1])
        print(f"   {method:9s} at {layer}: object {np.nanmean(po):.3f}, hand {np.nanmean(ph):.3f}")
    print("6. the deletion baseline: mean probability of the true class; deletion / insertion AUC (mean +- 95% CI)")
    probs = defaultdict(list)
    auc = defaultdict(list)
    for rec in recs:
        opened, true = b.open(rec.id), b.true_class(rec.id)
        x = opened.x  # (1, 3, T, S, S)
        s = x.shape[-1]
        k = max(3, (s // 8) | 1)
        blurred = torch.nn.functional.avg_pool3d(x, (1, k, k), stride=1, padding=(0, k // 2, k // 2),
                                                 count_include_pad=False)  # (1, 3, T, S, S), as the metric blurs
        with torch.no_grad():
            for name, v in (("clip", x), ("blurred", blurred), ("mean colour", torch.zeros_like(x))):
                probs[name].append(float(torch.softmax(b.model(v), 1)[0, true]))
        shape = (x.shape[2], s, s)
        maps = {"gradcam": upsample(b.explain(rec.id, [true]).map_for(true), shape),
                "random": q.random_map(shape, seed=int(rec.id))}
        for base in ("mean", "blur"):
            for name, sal in maps.items():
                r = q.deletion_insertion(b.model, x, sal, true, baseline=base)
                auc[(base, name, "deletion")].append(r["deletion"])
                auc[(base, name, "insertion")].append(r["insertion"])
    print("   " + ", ".join(f"{name} {np.mean(v):.3f}" for name, v in probs.items()))
    for (base, name, metric), v in auc.items():
        mean, half, _ = q.mean_ci(v)
        print(f"   baseline {base:4s} {name:8s} {metric:9s} {mean:.3f} +- {half:.3f}")
    return 0


def _init_like(model):
    from vidviz.models import build_model

    torch.manual_seed(0)
    return build_model(model.arch, model.classes, model.spec, model.arch_kwargs).eval()


def _erf_centres(model, cells=((1, 1), (3, 3), (5, 5), (1, 5))):
    s = model.spec.size
    x = torch.randn(4, 3, model.spec.num_frames, s, s, generator=torch.Generator().manual_seed(0), requires_grad=True)
    a = model.run(x, stop=model.last_layer)  # (4, C, T', h, w)
    cell = s / a.shape[-1]
    yy, xx = torch.meshgrid(torch.arange(float(s)), torch.arange(float(s)), indexing="ij")
    out = []
    for i, j in cells:
        (g,) = torch.autograd.grad(a[:, :, a.shape[2] // 2, i, j].sum(), x, retain_graph=True)
        w = g.abs().sum((0, 1, 2))  # (S, S)
        out.append(((i, j), (float((w * yy).sum() / w.sum()), float((w * xx).sum() / w.sum())),
                    (cell * i + (cell - 1) / 2, cell * j + (cell - 1) / 2)))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
