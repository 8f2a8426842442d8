"""``vidviz bench``: benchmarks that print figures (never timed tests); outside the library's import graph.

Run as ``vidviz bench WHAT`` or ``python benchmarks/bench.py WHAT``:

    vidviz bench model       forward clips/s: default model, and i3d_resnet50 at 16x3x224x224
    vidviz bench explain     one clip: forward, all classes (one pass), autograd, batched top-5, captum
    vidviz bench app         server-side time of a viewer class switch and of opening an uncached clip
    vidviz bench gallery     gallery data path on a synthetic 220,847-clip store: time and peak memory
    vidviz bench precompute  precompute throughput vs plain batched inference of the same clips
    vidviz bench methods     every method on one clip, next to pytorch-grad-cam and Captum
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vidviz import config


def _sync() -> None:
    """Wait for the GPU's queued work (a CUDA call returns before its kernels have run)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _time(fn, repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in ms (on a GPU, until its kernels have finished)."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        _sync()
        t0 = time.perf_counter()
        fn()
        _sync()
        ts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ts)


def _time_interleaved(fns: dict, repeat: int = 5, warmup: int = 2) -> dict:
    """Median wall time (ms) of each of ``fns``, measured in interleaved rounds.

    Round-robin timing makes ratios between the functions immune to drift over the run
    (CPU clock ramp-up, another process waking up) that would bias whichever ran first.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    ts: dict = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            _sync()
            t0 = time.perf_counter()
            fn()
            _sync()
            ts[k].append((time.perf_counter() - t0) * 1000)
    return {k: statistics.median(v) for k, v in ts.items()}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_model(a) -> None:
    from vidviz.models import i3d_resnet50, load_checkpoint

    torch.set_num_threads(os.cpu_count() or 1)
    m = load_checkpoint(a.checkpoint).eval()
    x = torch.randn(8, 3, m.spec.num_frames, m.spec.size, m.spec.size)
    with torch.no_grad():
        ms = _time(lambda: m(x), repeat=5)
    print(f"{m.arch} (default checkpoint) forward, batch 8 of 3x{m.spec.num_frames}x{m.spec.size}x{m.spec.size}: "
          f"{8000 / ms:.1f} clips/s ({ms / 8:.1f} ms/clip)")
    big = i3d_resnet50([f"c{i}" for i in range(174)]).eval()
    xb = torch.randn(1, 3, 16, 224, 224)
    with torch.no_grad():
        ms = _time(lambda: big(xb), repeat=2, warmup=1)
    print(f"i3d_resnet50 forward, batch 1 of 3x16x224x224: {1000 / ms:.2f} clips/s ({ms:.0f} ms/clip)")


def bench_explain(a) -> None:
    from vidviz.backend import Backend
    from vidviz.explain.cam import autograd_cams, forward_cams

    b = Backend(a.checkpoint, a.data)
    m = b.model
    key = b.dataset.split("test")[0].id
    x = b.open(key).x
    mid = m.layer_names[-2]
    top5 = [c for c, _ in b.open(key).top[:5]]

    def forward():
        with torch.no_grad():
            return m(x)

    all_k = "all classes, one pass (last block)"
    one_k, five_k = f"Grad-CAM one class, autograd ({mid})", f"Grad-CAM top-5 batched ({mid})"
    ms = _time_interleaved({
        "plain forward": forward,
        all_k: lambda: forward_cams(m, x),
        "Grad-CAM one class, autograd (last block)": lambda: autograd_cams(m, x, m.last_layer, [top5[0]]),
        one_k: lambda: autograd_cams(m, x, mid, [top5[0]]),
        five_k: lambda: autograd_cams(m, x, mid, top5),
        f"Grad-CAM top-5 batched, full gradient maps ({mid})": lambda: autograd_cams(m, x, mid, top5,
                                                                                    full_gradients=True),
    }, repeat=a.repeat)
    rows = list(ms.items())
    fwd, one_mid, five_mid = ms["plain forward"], ms[one_k], ms[five_k]
    try:
        from captum.attr import LayerGradCam

        lgc = LayerGradCam(m, m.stages[m.last_layer])
        rows.append(("captum LayerGradCam, one class (last block)",
                     _time(lambda: lgc.attribute(x, target=top5[0]), repeat=a.repeat)))
        rows.append(("captum LayerGradCam, all classes (last block)",
                     _time(lambda: [lgc.attribute(x, target=c) for c in range(m.num_classes)], repeat=1, warmup=0)))
    except ImportError:
        print("captum not installed: skipped")
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        with GradCAM(model=m, target_layers=[m.stages[m.last_layer]]) as cam:
            rows.append(("pytorch-grad-cam GradCAM, one class",
                         _time(lambda: cam(input_tensor=x, targets=[ClassifierOutputTarget(top5[0])]), repeat=a.repeat)))
    except Exception as e:  # not installed, or its 5D support fails
        print(f"pytorch-grad-cam: skipped ({type(e).__name__})")
    from vidviz import runtime

    print(f"clip {key}, model {m.arch}, input {tuple(x.shape)}, {torch.get_num_threads()} threads, "
          f"allocator tuning {'on' if runtime.tune_allocator() else 'off'}, "
          f"median of {a.repeat} (the first six timed in interleaved rounds)")
    for name, t in rows:
        print(f"  {name:52s} {t:9.1f} ms  {t / fwd:6.2f}x forward")
    print(f"all classes / forward = {ms[all_k] / fwd:.2f} (target <= 1.1); "
          f"top-5 batched / one class at {mid} = {five_mid / one_mid:.2f} (target <= 1.5)")


def synthetic_store(out: Path, n: int, classes: list[str], k: int = 5, t: int = 16, hw: int = 7, seed: int = 0) -> Path:
    """A store of ``n`` clips with random logits and maps (for the scale benchmark)."""
    import io

    from vidviz.data.io import atomic_write_bytes, atomic_write_json
    from vidviz.jobs.store import VERSION, prediction_table

    rng = np.random.default_rng(seed)
    kk = len(classes)
    labels = rng.integers(0, kk, n)
    logits = rng.normal(0, 1, (n, kk)).astype(np.float32)
    logits[np.arange(n), labels] += rng.normal(2.5, 1.5, n).astype(np.float32)
    out.mkdir(parents=True, exist_ok=True)
    table = prediction_table([str(i) for i in range(n)], labels, logits, classes, k)
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    atomic_write_bytes(out / "predictions.parquet", buf.getvalue())
    mm = np.lib.format.open_memmap(out / "maps.npy", mode="w+", dtype=np.float16, shape=(n, k + 1, t, hw, hw))
    for i in range(0, n, 20000):
        j = min(n, i + 20000)
        mm[i:j] = rng.random((j - i, k + 1, t, hw, hw), dtype=np.float32).astype(np.float16)
    mm.flush()
    del mm
    np.save(out / "map_classes.npy", np.stack([*(table[f"top{j + 1}"].to_numpy() for j in range(k)), labels], 1).astype(np.int32))
    np.save(out / "curves.npy", np.full((n, t), 1 / t, np.float16))
    atomic_write_json(out / "meta.json", {"version": VERSION, "complete": True, "classes": classes, "k": k, "clips": n,
                                          "checkpoint_hash": "synthetic", "dataset_fingerprint": "synthetic"})
    return out


def bench_gallery(a) -> None:
    import pandas as pd  # noqa: F401

    from vidviz import tables
    from vidviz.jobs.store import open_store

    classes = [f"class {i}" for i in range(174)]
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        import multiprocessing as mp

        builder = mp.get_context("spawn").Process(target=synthetic_store, args=(Path(d) / "s", a.clips, classes))
        builder.start()  # built in another process, so this one's peak memory is the gallery's alone
        builder.join()
        print(f"synthetic store of {a.clips} clips, 174 classes: built in {time.perf_counter() - t0:.1f} s")
        base = _rss_mb()
        t0 = time.perf_counter()
        st = open_store(Path(d) / "s")
        t_open = time.perf_counter() - t0

        def render_once():
            counts = st.counts()
            rows = tables.select(st.table, "medium", "margin", None, None)
            page = rows.iloc[:12]
            conf = st.confusion()
            pairs = tables.confused_pairs(conf, classes)
            maps = [st.map_of(int(r), int(p)) for r, p in zip(page.index, page["pred"], strict=True)]
            return counts, len(rows), pairs, maps

        ms = _time(render_once, repeat=5)
        filt = _time(lambda: tables.select(st.table, "negative", "entropy", 3, 7), repeat=5)
        peak = _rss_mb()
    print(f"  open store (parquet + memory-mapped maps): {t_open * 1000:.0f} ms")
    print(f"  one gallery render (counts, sort a case, a page of 12 maps, confusion, pairs): {ms:.0f} ms (target <= 1000)")
    print(f"  filter by a (true, predicted) pair and sort: {filt:.0f} ms")
    print(f"  peak memory of this process: {peak:.0f} MB (before opening the store: {base:.0f} MB; target <= 1024)")


def bench_precompute(a) -> None:
    from vidviz.data.datasets import open_dataset
    from vidviz.data.loader import iterate_batches
    from vidviz.jobs.store import precompute
    from vidviz.models import load_checkpoint

    ds = open_dataset(a.data)
    m = load_checkpoint(a.checkpoint)
    recs = ds.split("test")
    t0 = time.perf_counter()
    with torch.no_grad():
        n = 0
        for batch in iterate_batches(recs, m.spec, 8, a.workers):
            if batch.x is not None:
                m(batch.x)
                n += len(batch.indices)
    plain = n / (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        precompute(m, ds, "test", Path(d) / "store", batch_size=8, workers=a.workers)
        pre = len(recs) / (time.perf_counter() - t0)
    print(f"{len(recs)} test clips, {a.workers} decoding workers, batch 8:")
    print(f"  plain batched inference: {plain:.1f} clips/s")
    print(f"  precompute (logits, top-5 + true maps, curves, parquet): {pre:.1f} clips/s")
    print(f"  ratio {pre / plain:.2f} (target >= 0.9)")


#: vidviz method -> pytorch-grad-cam's class for it (the peer computing the same map)
GRAD_CAM_PEERS = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM", "hirescam": "HiResCAM",
                  "gradcam-elementwise": "GradCAMElementWise", "layercam": "LayerCAM", "eigencam": "EigenCAM",
                  "ablationcam": "AblationCAM", "scorecam": "ScoreCAM"}


def _captum_peer(m, x, method: str, c: int):
    """The same attribution called on Captum directly (the peer of an input method, and of Grad-CAM)."""
    from captum import attr

    if method == "gradcam":
        lgc = attr.LayerGradCam(m, m.stages[m.last_layer])
        return lambda: lgc.attribute(x, target=c)
    if method == "integrated-gradients":
        ig = attr.IntegratedGradients(m)
        return lambda: ig.attribute(x, baselines=torch.zeros_like(x), target=c, n_steps=16)
    if method == "smoothgrad":
        nt = attr.NoiseTunnel(attr.Saliency(m))
        return lambda: nt.attribute(x, nt_type="smoothgrad", nt_samples=8, stdevs=0.15 * float(x.max() - x.min()),
                                    target=c, abs=False)
    if method == "input-x-gradient":
        ixg = attr.InputXGradient(m)
        return lambda: ixg.attribute(x, target=c)
    if method == "occlusion":
        occ = attr.Occlusion(m)
        return lambda: occ.attribute(x, sliding_window_shapes=(3, 4, 28, 28), strides=(3, 4, 28, 28), baselines=0.0,
                                     target=c, perturbations_per_eval=8)
    return None


def _cpu_agreement(m, x, c: int, method: str, maps: np.ndarray) -> str:
    """Largest difference between ``maps`` (computed on the GPU) and the same method on the CPU, relative to the
    CPU maps' largest value."""
    import copy

    from vidviz.explain.cam import explain

    ref = explain(copy.deepcopy(m).cpu(), x.cpu(), [c], method).maps  # (1, T', h, w) or the input's cells
    return f"{float(np.abs(maps - ref).max() / max(float(np.abs(ref).max()), 1e-12)):.1e}"


def bench_methods(a) -> None:
    """Every method on one clip of the default model, one class (the top-1) at the last block, as a multiple of
    one forward, next to pytorch-grad-cam's and Captum's time for the same method where they run on 5D input.
    On a GPU (``--device cuda``, or ``auto`` where one is present) convolutions run in full FP32 (TF32 off, as in
    vidviz), each method's maps are compared with the CPU's, and Score-CAM is also timed with TF32 on."""
    import warnings

    from vidviz.backend import Backend
    from vidviz.explain.cam import explain
    from vidviz.explain.methods import METHOD_INFO, METHODS

    warnings.filterwarnings("ignore")  # Captum warns that the input does not require gradients (it sets that itself)
    b = Backend(a.checkpoint, a.data, device=a.device)
    m = b.model
    gpu = b.device.type == "cuda"
    key = b.dataset.split("test")[0].id
    x = b.open(key).x.to(b.device)  # (1, 3, 16, 112, 112)
    c = b.open(key).top[0][0]
    layer = m.last_layer
    channels = int(m.run(x, stop=layer).shape[1])

    def forward():
        with torch.no_grad():
            return m(x)

    fwd = _time(forward, repeat=a.repeat)
    try:
        import pytorch_grad_cam as pgc
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        pgc = None
        print("pytorch-grad-cam not installed (make bench-deps): its column is empty")
    where = torch.cuda.get_device_name(b.device) if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"vidviz bench methods: clip {key}, model {m.arch}, input {tuple(x.shape)}, class {c}, layer {layer} "
          f"({channels} channels), {where}; one forward {fwd:.1f} ms; median of {a.repeat}")
    print(f"  {'method':22s} {'vidviz':>10s} {'x fwd':>7s} {'pytorch-grad-cam':>18s} {'captum':>10s}   "
          f"{'vs CPU   ' if gpu else ''}cost")
    slow = {"scorecam", "ablationcam", "integrated-gradients", "smoothgrad", "occlusion"}
    for method in METHODS:
        reps = max(1, a.repeat // 3) if method in slow and not gpu else a.repeat
        ours = _time(lambda method=method: explain(m, x, [c], method), repeat=reps)
        peer = "-"
        if pgc is not None and method in GRAD_CAM_PEERS:
            import copy

            pm = copy.deepcopy(m)  # some of its methods replace the layer with their own module and leave it there
            try:
                with getattr(pgc, GRAD_CAM_PEERS[method])(model=pm, target_layers=[pm.stages[layer]]) as cam:
                    if method == "scorecam":
                        cam.batch_size = channels if gpu else 16
                    t = _time(lambda cam=cam: cam(input_tensor=x, targets=[ClassifierOutputTarget(c)]), repeat=reps)
                peer = f"{t:9.1f} ms"
            except Exception as e:  # its 5D support fails for this method
                peer = f"fails ({type(e).__name__})"
        cap = _captum_peer(m, x, method, c)
        cap_t = f"{_time(cap, repeat=reps):7.1f} ms" if cap is not None else "-"
        agree = f"{_cpu_agreement(m, x, c, method, explain(m, x, [c], method).maps):9s}" if gpu else ""
        print(f"  {method:22s} {ours:7.1f} ms {ours / fwd:6.1f}x {peer:>18s} {cap_t:>10s}   {agree}"
              f"{METHOD_INFO[method].cost}")
    if gpu:
        torch.backends.cudnn.allow_tf32 = True
        fwd32 = _time(forward, repeat=a.repeat)
        sc32 = _time(lambda: explain(m, x, [c], "scorecam"), repeat=a.repeat)
        torch.backends.cudnn.allow_tf32 = False
        print(f"  with TF32 convolutions: one forward {fwd32:.1f} ms, scorecam {sc32:.1f} ms ({sc32 / fwd32:.1f}x)")
    print(f"Score-CAM: {channels} channels = {channels / 64:.0f} x 64; target <= 2 forwards per 64 channels")


#: each architecture at a small input it accepts: (frames, side); s3d and MViT need 224 px (and MViT 16 frames)
MODEL_INPUTS = {"r3d_18": (16, 112), "mc3_18": (16, 112), "r2plus1d_18": (16, 112), "s3d": (16, 224),
                "mvit_v1_b": (16, 224), "mvit_v2_s": (16, 224), "swin3d_t": (16, 112), "swin3d_s": (16, 112),
                "swin3d_b": (16, 112), "hf:videomae": (16, 112), "hf:timesformer": (8, 112), "hf:vivit": (16, 112)}


def _bench_model_of(name: str, tmp: Path):
    """``name`` with random weights at its bench input, saved and loaded back through the user's path."""
    from dataclasses import replace

    from vidviz.models import load_checkpoint, save_checkpoint

    t, s = MODEL_INPUTS[name]
    torch.manual_seed(0)
    if name.startswith("hf:"):
        import transformers as tf

        tf.utils.logging.disable_progress_bar()
        kind = name[3:]
        cfg = {"videomae": lambda: tf.VideoMAEConfig(image_size=s, num_frames=t),
               "timesformer": lambda: tf.TimesformerConfig(image_size=s, num_frames=t),
               "vivit": lambda: tf.VivitConfig(image_size=s, num_frames=t)}[kind]()
        cfg.num_labels = 174  # a Something-Something v2 head
        net = getattr(tf, {"videomae": "VideoMAE", "timesformer": "Timesformer", "vivit": "Vivit"}[kind]
                      + "ForVideoClassification")(cfg)
        net.save_pretrained(tmp / kind)
        return load_checkpoint(tmp / kind)
    from vidviz.models.torchvision_video import kinetics_meta, load_torchvision_weights

    net = getattr(__import__("torchvision.models.video", fromlist=[name]), name)(weights=None)
    torch.save(net.state_dict(), tmp / f"{name}.pth")
    spec = replace(kinetics_meta(name)[1], num_frames=t, size=s)
    return load_checkpoint(save_checkpoint(tmp / f"{name}.pt", load_torchvision_weights(tmp / f"{name}.pth", name, spec)))


def _flop_bound(m, x, layer: str) -> float:
    """(F + 5 F_after) / (F + F_after) from counted multiply-adds: F one forward, F_after the part after
    ``layer``. A backward through a convolution or linear layer costs its forward again, once per class, so an
    exact top-5 costs about F + 5 F_after and one class F + F_after: the ratio the timings approach."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as whole:
        m(x)
    with torch.no_grad(), FlopCounterMode(display=False) as before:
        m.run(x, stop=layer)
    f, after = whole.get_total_flops(), whole.get_total_flops() - before.get_total_flops()
    return (f + 5 * after) / (f + after)


def _bench_one_model(name: str, repeat: int, device: torch.device) -> list[str]:
    """The rows of `bench models` for one architecture: its middle layer, then the layer before its last."""
    import tempfile

    from vidviz.explain.cam import autograd_cams, forward_cams, one_pass_applies

    with tempfile.TemporaryDirectory() as tmp:
        m = _bench_model_of(name, Path(tmp)).eval().to(device)
    t, s = MODEL_INPUTS[name]
    x = torch.randn(1, 3, t, s, s, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        top5 = m(x)[0].topk(5).indices.tolist()
    mid, late = m.layer_names[len(m.layer_names) // 2], m.layer_names[-2]
    reps = max(1, repeat // 2) if name.startswith(("mvit", "s3d")) else repeat

    def forward():
        with torch.no_grad():
            return m(x)

    fns = {"forward": forward}
    for layer in (mid, late):
        fns[layer, 1] = lambda layer=layer: autograd_cams(m, x, layer, top5[:1])
        fns[layer, 5] = lambda layer=layer: autograd_cams(m, x, layer, top5)
    fast = one_pass_applies(m, "gradcam", None)
    if fast:
        fns["all"] = lambda: forward_cams(m, x)
    ms = _time_interleaved(fns, repeat=reps, warmup=1)
    fwd = ms["forward"]
    all_s = f"{ms['all']:7.0f} ms {ms['all'] / fwd:4.2f}x" if fast else "backward/class"
    cap = "-"
    if hasattr(m, "net") and not name.startswith(("swin", "mvit", "hf:")):  # Captum reads channels-first maps only
        from captum.attr import LayerGradCam

        lgc = LayerGradCam(m, m.net.get_submodule(mid))
        cap = f"{_time(lambda: lgc.attribute(x, target=top5[0]), repeat=reps):7.0f} ms"
    rows = []
    for i, layer in enumerate((mid, late)):
        one, five = ms[layer, 1], ms[layer, 5]
        head = f"{name:16s} {f'{t}x{s}':>10s} {fwd:6.0f} ms {all_s:>17s}" if i == 0 else " " * 53
        agree = ""
        if device.type == "cuda":  # the top-5 maps against the CPU's, relative to their largest value
            import copy

            ref = autograd_cams(copy.deepcopy(m).cpu(), x.cpu(), layer, top5)[1]  # (5, T', h, w)
            got = autograd_cams(m, x, layer, top5)[1].cpu()
            agree = f"  {float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-12)):.1e}"
        rows.append(f"  {head} {layer:28s} {one:7.0f} ms {five:7.0f} ms {five / one:7.2f}x "
                    f"{_flop_bound(m, x, layer):8.2f} {cap if i == 0 else '-':>10s}{agree}")
    return rows


def bench_models(a) -> None:
    """Every adapter on one random clip: forward, Grad-CAM of all classes at the default layer (the one-forward
    path where it applies), one class and the top-5 at the middle layer and at the layer before the last, the
    ratio that counted multiply-adds give (:func:`_flop_bound`), and Captum's LayerGradCam at the middle layer
    where it reads the layer's layout (channels-first 5D maps)."""
    import warnings

    warnings.filterwarnings("ignore")
    from vidviz.runtime import pick_device

    names = a.models or list(MODEL_INPUTS)
    dev = pick_device(a.device)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"vidviz bench models: random weights, one clip, {where}, median of {a.repeat}")
    print(f"  {'model':16s} {'input':>10s} {'forward':>9s} {'all classes':>17s} {'layer':28s} {'one class':>10s} "
          f"{'top-5':>10s} {'top5/one':>8s} {'flops':>8s} {'captum':>10s}{'  vs CPU' if dev.type == 'cuda' else ''}")
    for name in names:
        for row in _bench_one_model(name, a.repeat, dev):
            print(row, flush=True)
    print("targets: all classes <= 1.1x forward where the one-forward path applies; top-5 <= 1.5x one class")
    print("flops: (F + 5 F_after) / (F + F_after), F one forward's multiply-adds and F_after those after the layer")


BENCHES = {"model": bench_model, "explain": bench_explain, "gallery": bench_gallery, "precompute": bench_precompute,
           "methods": bench_methods, "models": bench_models}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=list(BENCHES))
    p.add_argument("--data", default=str(config.DEFAULT_DATA))
    p.add_argument("--checkpoint", default=str(config.DEFAULT_CHECKPOINT))
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--clips", type=int, default=220_847, help="store size for `gallery`")
    p.add_argument("--workers", type=int, default=2, help="decoding processes for `precompute`")
    p.add_argument("--device", default="auto", help="auto (cuda where present), cpu or cuda: `methods`, `models`")
    p.add_argument("--models", nargs="+", default=None, choices=list(MODEL_INPUTS), help="for `models` (default: all)")
    a = p.parse_args(argv)
    from vidviz import runtime

    runtime.tune_allocator()
    BENCHES[a.what](a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
