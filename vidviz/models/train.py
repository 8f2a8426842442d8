"""Training and evaluation.

``vidviz train`` decodes the training clips once (DataLoader workers), keeps them in memory
as uint8 when they fit, and trains with augmentation that respects Something-Something:
random resized crops and colour jitter, and horizontal flips only together with a swap of
left/right classes (a flipped "Pushing [something] from left to right" *is* "... from right
to left"); a class whose flip has no partner is never flipped. The best checkpoint on the
validation split is kept; ``--resume`` continues from the last finished epoch. Under
``torchrun`` each rank trains on its shard (gloo on CPU, nccl on GPU) and rank 0 writes.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from vidviz.data.datasets import VideoDataset, match_classes
from vidviz.data.io import atomic_write_bytes
from vidviz.data.loader import iterate_batches
from vidviz.data.video import standardise
from vidviz.errors import CheckpointError, DatasetError, UsageError
from vidviz.models.checkpoint import build_model, load_checkpoint, save_checkpoint
from vidviz.models.guide import action_frames, class_evidence, evidence_mask, frame_pointing, guide_loss, inside_share
from vidviz.models.resnet3d import VideoClassifier
from vidviz.runtime import barrier, init_distributed, pick_device


@dataclass
class TrainConfig:
    arch: str = "i3d_resnet_tiny"  # architecture name (vidviz.models.ARCHS)
    epochs: int = 16  # passes over the training split
    batch_size: int = 16  # clips per step (per rank)
    lr: float = 1e-3  # AdamW peak learning rate (cosine decay after a half-epoch warm-up)
    weight_decay: float = 0.01  # AdamW weight decay
    workers: int = 2  # DataLoader decoding processes
    seed: int = 0  # shuffling and augmentation
    cache_mb: int = 6000  # keep decoded clips in memory when they fit in this budget
    init_2d: str | None = None  # torchvision ResNet-50 weights to inflate (i3d_resnet50 only)
    device: str = "auto"  # "auto", "cpu" or "cuda"
    max_steps: int | None = None  # stop early (tests)
    guide: float = 0.0  # weight of the evidence-guidance loss (vidviz.models.guide); 0 = plain cross-entropy


def flip_partners(classes: list[str]) -> np.ndarray:
    """For each class, the class a horizontal flip turns it into; -1 where a flip is not allowed."""
    def swap(name: str) -> str:
        return name.replace("left", "\0").replace("right", "left").replace("\0", "right")

    index = {c: i for i, c in enumerate(classes)}
    out = np.full(len(classes), -1, dtype=np.int64)
    for i, c in enumerate(classes):
        if "left" not in c and "right" not in c:
            out[i] = i
        else:
            out[i] = index.get(swap(c), -1)
    return out


def augment(frames: torch.Tensor, labels: torch.Tensor, spec, partners: torch.Tensor, gen: torch.Generator,
            masks: torch.Tensor | None = None, grid: tuple[int, int] | None = None) -> tuple:
    """uint8 (B, T, S0, S0, 3) -> normalised float (B, 3, T, S, S), with flips that swap left/right labels.

    ``masks`` uint8 (B, T, S0, S0), when given, get the same crop and flip and come back as a third output,
    the share of each cell of ``grid`` (h, w) they cover: float (B, T, h, w).
    """
    b, t, s0 = frames.shape[0], frames.shape[1], frames.shape[2]
    x = frames.permute(0, 4, 1, 2, 3).float().div_(255.0)  # (B, 3, T, S0, S0)
    out = torch.empty(b, 3, t, spec.size, spec.size)
    cells = torch.zeros(b, t, *grid) if masks is not None else None  # (B, T, h, w)
    labels = labels.clone()
    for i in range(b):
        side = int(s0 * (0.75 + 0.25 * torch.rand(1, generator=gen).item()))
        y0 = int(torch.randint(0, s0 - side + 1, (1,), generator=gen))
        x0 = int(torch.randint(0, s0 - side + 1, (1,), generator=gen))
        crop = x[i, :, :, y0:y0 + side, x0:x0 + side]  # (3, T, side, side)
        if masks is not None:
            cells[i] = F.adaptive_avg_pool2d(masks[i, :, y0:y0 + side, x0:x0 + side].float(), grid)  # (T, h, w)
        crop = F.interpolate(crop, size=(spec.size, spec.size), mode="bilinear", align_corners=False)  # (3, T, S, S)
        bright = 0.8 + 0.4 * torch.rand(1, generator=gen).item()
        contrast = 0.8 + 0.4 * torch.rand(1, generator=gen).item()
        m = crop.mean()
        crop = ((crop - m) * contrast + m) * bright
        p = int(partners[labels[i]])
        if p >= 0 and torch.rand(1, generator=gen).item() < 0.5:
            crop = crop.flip(-1)
            labels[i] = p
            if masks is not None:
                cells[i] = cells[i].flip(-1)
        out[i] = crop.clamp_(0, 1)
    if masks is not None:
        return standardise(out, spec), labels, cells  # (B, 3, T, S, S), (B,), (B, T, h, w)
    return standardise(out, spec), labels  # (B, 3, T, S, S)


def decode_split(records, spec, size: int, workers: int, desc: str, disable: bool = False, ds=None):
    """All clips of ``records`` as uint8 (N, T, size, size, 3), their labels, the failures, and, given the
    dataset ``ds``, each clip's evidence mask and action frames (:mod:`vidviz.models.guide`): uint8
    (N, T, size, size) and bool (N, T) (else None)."""
    frames, labels, failures, masks, action = [], [], [], [], []
    bar = tqdm(total=len(records), desc=desc, unit="clip", disable=disable)
    for batch in iterate_batches(records, spec, batch_size=8, workers=workers, uint8_size=size):
        for j, i in enumerate(batch.indices):
            frames.append(batch.x[j])
            labels.append(records[i].label)
            if ds is not None:
                cid = records[i].id
                masks.append(torch.from_numpy(evidence_mask(ds.boxes.get(cid), batch.geometry[j], size)))
                action.append(torch.from_numpy(action_frames(ds.windows.get(cid), batch.geometry[j])))
        failures += [(records[i].id, msg) for i, msg in batch.errors]
        bar.update(len(batch.indices) + len(batch.errors))
    bar.close()
    if not frames:
        return torch.empty(0), torch.empty(0, dtype=torch.long), failures, None
    guide = (torch.stack(masks), torch.stack(action)) if ds is not None else None
    return torch.stack(frames), torch.tensor(labels, dtype=torch.long), failures, guide


@torch.no_grad()
def predict_logits(model: VideoClassifier, x: torch.Tensor, device: torch.device, batch: int = 16) -> torch.Tensor:
    """Logits (N, K) for normalised clips x (N, 3, T, S, S)."""
    outs = []
    for i in range(0, len(x), batch):
        outs.append(model(x[i:i + batch].to(device)).float().cpu())  # (b, K)
    return torch.cat(outs) if outs else torch.empty(0, model.num_classes)


@torch.no_grad()
def _evidence_inside(model: VideoClassifier, x: torch.Tensor, y: torch.Tensor, cells: torch.Tensor,
                     action: torch.Tensor, device: torch.device, batch: int = 16) -> tuple[float, float]:
    """(mean share of the true class's positive evidence at the last block inside the boxes of the action's
    frames, share of the boxed frames whose peak cell is in a box) over the clips that have a box: x (N, 3, T, S, S),
    y (N,), cells (N, T, h, w) (the boxes on every frame), action (N, T) bool."""
    shares, hits = [], []
    for i in range(0, len(x), batch):
        keep = cells[i:i + batch].flatten(1).amax(1) > 0  # (b,)
        if not bool(keep.any()):
            continue
        m = cells[i:i + batch][keep].to(device)  # (b', T, h, w)
        m_a = m * action[i:i + batch][keep].to(device)[:, :, None, None]  # (b', T, h, w)
        a = model.features(x[i:i + batch][keep].to(device))  # (b', C, T, h, w)
        cam = class_evidence(a, model.head.fc.weight[y[i:i + batch][keep].to(device)])  # (b', T, h, w)
        shares.append(inside_share(cam, m_a).cpu())
        hit, has = frame_pointing(cam, m)  # (b', T)
        hits.append(hit[has].cpu())
    if not shares:
        return float("nan"), float("nan")
    return float(torch.cat(shares).mean()), float(torch.cat(hits).float().mean())


def _normalise(frames: torch.Tensor, spec) -> torch.Tensor:
    """uint8 (N, T, S0, S0, 3) -> float (N, 3, T, S, S) (centre view, as at test time)."""
    x = frames.permute(0, 4, 1, 2, 3).float().div(255.0)  # (N, 3, T, S0, S0)
    if x.shape[-1] != spec.size:
        n, c, t, h, w = x.shape
        x = F.interpolate(x.reshape(n, c * t, h, w), size=(spec.size, spec.size), mode="bilinear",
                          align_corners=False, antialias=True).reshape(n, c, t, spec.size, spec.size)
    return standardise(x, spec)  # (N, 3, T, S, S)


def train(ds: VideoDataset, out: str | Path, cfg: TrainConfig, resume: bool = False, log=print) -> dict:
    """Train on ``ds``'s train split, keep the best on validation in ``out``; returns a summary."""
    if cfg.epochs < 1:
        raise UsageError(f"--epochs must be at least 1 (got {cfg.epochs}); nothing would be trained or written")
    if cfg.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1 (got {cfg.batch_size})")
    rank, world = init_distributed()
    main = rank == 0
    out = Path(out)
    state_path = out.with_name(out.stem + ".resume.pt")
    device = pick_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    torch.manual_seed(cfg.seed)
    train_recs = [r for r in ds.split("train") if r.label is not None]
    val_recs = [r for r in ds.split("validation") if r.label is not None]
    if not train_recs:
        raise DatasetError("no labelled clips in the train split", ds.root)
    model = build_model(cfg.arch, ds.classes)
    if cfg.init_2d:
        from vidviz.models.inflate import inflate_resnet2d
        inflate_resnet2d(model, cfg.init_2d)
    spec = model.spec
    decode_size = int(round(spec.size * 8 / 7))
    t0 = time.perf_counter()
    guided = cfg.guide > 0
    if cfg.guide < 0:
        raise UsageError(f"--guide must be 0 or more (got {cfg.guide})")
    if guided and not ds.boxes:
        raise DatasetError("--guide needs per-frame boxes (annotations/bounding_box_smthsmth.json, the "
                           "Something-Else format), and this dataset has none", ds.root)
    xtr, ytr, bad_tr, mtr = decode_split(train_recs, spec, decode_size, cfg.workers, "decode train", not main,
                                         ds if guided else None)
    xva, yva, bad_va, mva = decode_split(val_recs, spec, spec.size, cfg.workers, "decode validation", not main,
                                         ds if guided else None)
    for cid, msg in bad_tr + bad_va:
        if main:
            log(f"skipped clip {cid}: {msg}")
    if len(xtr) == 0:  # nothing to learn from: no checkpoint of random weights is written
        first = f"; first: {bad_tr[0][0]}: {bad_tr[0][1]}" if bad_tr else ""
        raise DatasetError(f"no clip of the train split could be decoded ({len(bad_tr)} failed{first})", ds.root)
    xva = _normalise(xva, spec) if len(xva) else xva
    partners = torch.from_numpy(flip_partners(ds.classes))
    model.to(device, memory_format=torch.channels_last_3d)  # ~25% faster 3D convs on CPU
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(xtr) / (cfg.batch_size * world))
    total = steps_per_epoch * cfg.epochs
    warm = max(1, steps_per_epoch // 2)

    def lr_at(step):
        if step < warm:
            return cfg.lr * (step + 1) / warm
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    start_epoch, best, history, step = 0, -1.0, [], 0
    if resume and state_path.is_file():
        from vidviz.models.weights import torch_load

        st = torch_load(state_path)
        try:
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["optim"])
        except (KeyError, TypeError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"resume state does not fit this training run ({str(e).splitlines()[0][:120]}); "
                                  "delete it to start over", state_path) from None
        start_epoch, best, history = int(st["epoch"]) + 1, float(st["best"]), list(st["history"])
        step = start_epoch * steps_per_epoch
        if main:
            log(f"resuming after epoch {start_epoch} (best validation top-1 {best:.3f})")
    gen = torch.Generator().manual_seed(cfg.seed + 1000 * start_epoch + rank)
    last = {}  # the last block's output of the current step (guided training reads it)
    if guided:
        model.stages[model.last_layer].register_forward_hook(lambda _m, _i, out: last.__setitem__("a", out))
        model.eval()  # no batch-norm statistics from the probe
        with torch.no_grad():
            probe = torch.zeros(1, 3, spec.num_frames, spec.size, spec.size, device=device)  # (1, 3, T, S, S)
            grid = tuple(model.features(probe).shape[-2:])
        mva_cells = F.adaptive_avg_pool2d(mva[0].float(), grid) if mva is not None else None  # (N, T, h, w)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(cfg.seed + epoch))
        perm = perm[rank::world]
        losses = []
        bar = tqdm(range(0, len(perm), cfg.batch_size), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                   disable=not main)
        for i in bar:
            idx = perm[i:i + cfg.batch_size]
            if guided:
                x, y, cells = augment(xtr[idx], ytr[idx], spec, partners, gen, mtr[0][idx], grid)  # ..., (B, T, h, w)
            else:
                x, y = augment(xtr[idx], ytr[idx], spec, partners, gen)  # (B, 3, T, S, S), (B,)
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            x = x.to(device, memory_format=torch.channels_last_3d)
            y = y.to(device)
            loss = F.cross_entropy(net(x), y, label_smoothing=0.05)
            if guided:
                loss = loss + cfg.guide * guide_loss(last["a"], model.head.fc.weight[y], cells.to(device),
                                                     mtr[1][idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            step += 1
            if cfg.max_steps and step >= cfg.max_steps:
                break
        model.eval()
        acc = float((predict_logits(model, xva, device).argmax(1) == yva).float().mean()) if len(xva) else 0.0
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"), "val_top1": acc})
        inside = ""
        if guided and mva_cells is not None:
            share, point = _evidence_inside(model, xva, yva, mva_cells, mva[1].float(), device)
            history[-1].update(val_evidence_in_boxes=share, val_peak_in_boxes=point)
            inside = f"; true-class evidence in the boxes {share:.3f}, peak cell in a box {point:.3f}"
        if main:
            log(f"epoch {epoch + 1}: train loss {history[-1]['loss']:.3f}, validation top-1 {acc:.3f}{inside}")
            if acc > best:
                best = acc
                save_checkpoint(out, model.cpu(), ds.fingerprint(), {"val_top1": acc, "epoch": epoch + 1},
                                {"training": {"guide": cfg.guide, "epochs": cfg.epochs, "lr": cfg.lr}})
                model.to(device, memory_format=torch.channels_last_3d)
            import io
            buf = io.BytesIO()
            torch.save({"model": {k: v.cpu() for k, v in model.state_dict().items()}, "optim": opt.state_dict(),
                        "epoch": epoch, "best": best, "history": history}, buf)
            atomic_write_bytes(state_path, buf.getvalue())
        if cfg.max_steps and step >= cfg.max_steps:
            break
    barrier()
    return {"best_val_top1": best, "epochs": len(history), "seconds": time.perf_counter() - t0, "history": history,
            "train_clips": len(xtr), "out": str(out)}


@torch.no_grad()
def evaluate(model: VideoClassifier, ds: VideoDataset, split: str, workers: int = 2, batch_size: int = 8,
             device: str = "auto", progress: bool = True) -> dict:
    """Top-1/top-5, per-class accuracy and the confusion matrix (the model's classes) on ``split``.

    Where the model's class names differ from the dataset's, a clip counts only when the model has its class
    (matched by name); ``unmatched`` counts the others."""
    labelled = [r for r in ds.split(split) if r.label is not None]
    if not labelled:
        raise DatasetError(f"no labelled clips in split {split!r}", ds.root)
    match = match_classes(list(ds.classes), list(model.classes))  # dataset class -> model class (-1: none)
    recs = [r for r in labelled if match[r.label] >= 0]
    if not recs:
        raise DatasetError(f"none of the model's {model.num_classes} class names is a class of split {split!r}",
                           ds.root)
    dev = pick_device(device)
    model = model.to(dev).eval()
    k = model.num_classes
    conf = np.zeros((k, k), dtype=np.int64)
    top5 = 0
    failures = []
    bar = tqdm(total=len(recs), desc=f"evaluate {split}", unit="clip", disable=not progress)
    for batch in iterate_batches(recs, model.spec, batch_size, workers):
        failures += [(recs[i].id, m) for i, m in batch.errors]
        if batch.x is not None:
            logits = model(batch.x.to(dev)).float().cpu()  # (B, K)
            pred = logits.argmax(1)
            topk = logits.topk(min(5, k), dim=1).indices  # (B, 5)
            for j, i in enumerate(batch.indices):
                y = int(match[recs[i].label])
                conf[y, int(pred[j])] += 1
                top5 += int((topk[j] == y).any())
        bar.update(len(batch.indices) + len(batch.errors))
    bar.close()
    n = int(conf.sum())
    same = list(ds.classes) == list(model.classes)
    per_class = {model.classes[c]: (float(conf[c, c] / conf[c].sum()) if conf[c].sum() else float("nan"))
                 for c in range(k) if same or conf[c].sum()}
    return {"split": split, "clips": n, "top1": float(np.trace(conf) / n) if n else 0.0,
            "top5": top5 / n if n else 0.0, "per_class": per_class, "confusion": conf, "failures": failures,
            "unmatched": len(labelled) - len(recs)}


def load_for_dataset(path: str | Path, ds: VideoDataset) -> VideoClassifier:
    """The model of ``path`` (a checkpoint file or a Hugging Face folder) for ``ds``; its class names may differ
    from the dataset's (clips are matched by name: :func:`vidviz.data.datasets.match_classes`)."""
    return load_checkpoint(path)
