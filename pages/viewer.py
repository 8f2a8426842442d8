"""Grad-CAM viewer: one clip, a target class, every frame's heatmap."""

import numpy as np
import streamlit as st

import ui
from vidviz import render
from vidviz.explain.cam import METHODS, contrast
from vidviz.explain.temporal import importance_curve

st.title("Grad-CAM viewer")
b = ui.backend()
ds = b.dataset
qp = st.query_params
VIDEO_TYPES = ["webm", "mp4", "avi", "mkv", "mov", "m4v"]


def _param(name):
    return lambda: ui.set_param(name, st.session_state[f"vw_{name}"])


@st.cache_data(max_entries=64, show_spinner=False)
def _video(key: str, _frames: np.ndarray, fps: float) -> bytes:
    return render.video_bytes(_frames, fps, min_side=0)


def _step(delta, ids):
    cur = st.session_state.get("vw_clip", ids[0])
    i = ids.index(cur) if cur in ids else 0
    st.session_state.vw_clip = ids[(i + delta) % len(ids)]
    ui.set_param("clip", st.session_state.vw_clip)


with ui.plain_errors():
    source = st.radio("Source", ["Dataset clip", "Upload a video"], horizontal=True, key="vw_source")
    key = None
    if source == "Dataset clip":
        ids = [r.id for r in ds.split(ui.split())] or [r.id for r in ds.records]
        if not ids:
            st.warning("This dataset has no readable clips.")
            st.stop()
        if "vw_clip" not in st.session_state:
            st.session_state.vw_clip = qp.get("clip", ids[0])
        c1, c2, c3 = st.columns([4, 1, 1])
        c1.text_input("Clip id", key="vw_clip", on_change=_param("clip"),
                      help="Type a clip id of the dataset, or step through the current split.")
        c2.button("◀ Previous", on_click=_step, args=(-1, ids), key="vw_prev", width="stretch")
        c3.button("Next ▶", on_click=_step, args=(1, ids), key="vw_next", width="stretch")
        key = st.session_state.vw_clip.strip()
    else:
        up = st.file_uploader("Your video", type=VIDEO_TYPES, key="vw_upload",
                              help="Any video file (WebM, MP4, AVI, MKV, MOV); at most 200 MB.")
        if up is None:
            st.info("Upload a video to explain it with the selected checkpoint.")
            st.stop()
        key = b.register_upload(up.name, up.getvalue())

    opened = b.open(key)
    rec = b.record(key)
    frames = opened.clip.frames  # (T, S0, S0, 3)
    T = len(frames)
    top = opened.top
    true_idx = rec.label if rec is not None else None

    # ---------------------------------------------------------------- the seed's header
    head_l, head_r = st.columns([3, 2])
    with head_l:
        title = f"True label: {rec.template}" if rec is not None and rec.template else "True label: (unknown)"
        st.markdown(f"#### {title}")
        st.markdown("  \n".join(render.format_top(top, b.classes, 2)))
        if rec is not None and rec.placeholders:
            st.caption(f"Objects: {', '.join(rec.placeholders)} · clip {rec.id} · {rec.split}")

    # ---------------------------------------------------------------- controls
    order = [c for c, _ in top[:5]] + [c for c in range(len(b.classes)) if c not in {c for c, _ in top[:5]}]
    want = qp.get("cls")
    default_cls = int(want) if want is not None and want.isdigit() and int(want) < len(b.classes) else top[0][0]
    ck = f"vw_cls_{key}"
    if ck not in st.session_state:
        st.session_state[ck] = default_cls
    probs = opened.probs
    with head_r:
        cls = st.selectbox("Target class (top predictions first)", order, key=ck,
                           format_func=lambda c: f"{b.classes[c]}  ({probs[c]:.2f})",
                           on_change=lambda: ui.set_param("cls", st.session_state[ck]))
        m1, m2, m3 = st.columns(3)
        method = m1.selectbox("Method", METHODS, index=METHODS.index(qp.get("method", "gradcam"))
                              if qp.get("method", "gradcam") in METHODS else 0, key="vw_method", on_change=_param("method"))
        layers = b.model.layer_names[::-1]
        layer = m2.selectbox("Layer", layers, index=layers.index(qp.get("layer")) if qp.get("layer") in layers else 0,
                             key="vw_layer", on_change=_param("layer"))
        norm = m3.selectbox("Normalise", ["clip", "frame"], key="vw_norm",
                            help="Scale the map to [0, 1] over the whole clip, or per frame.")
    st.caption("Heatmaps show Grad-CAM of the target class **logit** (pre-softmax); red = intense.")

    expl = b.explain(key, [cls], method, layer)
    raw = expl.map_for(cls)  # (T', h, w)
    shown = b.display_maps(raw, key, norm)  # (T, S0, S0)
    alpha = st.session_state.get("vw_alpha", 0.5)
    boxes, window = b.ground_truth(key)
    show_gt = False
    if boxes or window:
        show_gt = st.toggle("Show ground truth (object and hand boxes, action window)", key="vw_gt")
    ov = render.overlay(frames, shown, alpha)
    if show_gt and boxes:
        ov = render.draw_boxes(ov, boxes, 1.0, opened.clip.crop[:2])
    curve = importance_curve(raw, T)

    # ---------------------------------------------------------------- all frames
    st.subheader(f"All {T} frames: {b.classes[cls]}")
    st.image(list(ov), caption=[f"{i + 1} · {100 * v:.0f}%" for i, v in enumerate(curve)], width=118, output_format="JPEG")

    # ---------------------------------------------------------------- one frame large
    want_f = qp.get("frame")
    if "vw_frame" not in st.session_state:
        st.session_state.vw_frame = min(max(1, int(want_f)), T) if want_f and want_f.isdigit() else int(np.argmax(curve)) + 1
    big_l, big_r = st.columns([2, 3])
    with big_l:
        f = st.slider("Frame", 1, T, key="vw_frame", on_change=_param("frame"))
        st.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="vw_alpha")
        st.image(ov[f - 1], caption=f"frame {f}: {100 * curve[f - 1]:.1f}% of the map", width=360, output_format="JPEG")
    with big_r:
        st.plotly_chart(render.importance_figure({b.classes[cls]: curve}, f - 1, window if show_gt else None),
                        key="vw_curve", width="stretch")
        if st.toggle("Play as videos (original and overlay)", key="vw_videos",
                     help="Encoding the overlay video adds about 20 ms to each class switch."):
            v1, v2 = st.columns(2)
            v1.caption("Original")
            v1.video(_video(key, frames, b.spec.fps), format="video/webm", loop=True, width=300)
            v2.caption("Overlay")
            v2.video(render.video_bytes(ov, b.spec.fps, min_side=0), format="video/webm", loop=True, width=300)

    # ---------------------------------------------------------------- compare mode
    if st.toggle("Compare two classes", key="vw_compare"):
        a_default = true_idx if true_idx is not None else top[0][0]
        b_default = top[0][0] if top[0][0] != a_default else top[1][0]
        names = list(range(len(b.classes)))
        ca, cb = st.columns(2)
        cls_a = ca.selectbox("Class A (default: true label)", names, index=a_default, key=f"vw_cls_a_{key}",
                             format_func=lambda c: f"{b.classes[c]}  ({probs[c]:.2f})")
        cls_b = cb.selectbox("Class B (default: prediction)", names, index=b_default, key=f"vw_cls_b_{key}",
                             format_func=lambda c: f"{b.classes[c]}  ({probs[c]:.2f})")
        pair = b.explain(key, [cls_a, cls_b], method, layer)
        scale = max(float(pair.maps.max()), 1e-12)  # one scale for both, so they compare
        for col, c in ((ca, cls_a), (cb, cls_b)):
            m = b.display_maps(pair.map_for(c), key, "global", scale)
            col.image(list(render.overlay(frames, m, alpha)), width=80,
                      caption=[str(i + 1) for i in range(T)], output_format="JPEG")
        diff = b.display_signed(contrast(pair, cls_a, cls_b), key)  # (T, S0, S0) in [-1, 1]
        st.markdown(f"**Difference A − B** (red: more evidence for *{b.classes[cls_a]}*, blue: for *{b.classes[cls_b]}*)")
        st.image(list(render.signed_overlay(frames, diff)), width=80,
                 caption=[str(i + 1) for i in range(T)], output_format="JPEG")

    # ---------------------------------------------------------------- temporal tests
    if st.toggle("Temporal perturbation tests (reverse, freeze, shuffle, blank each frame)", key="vw_temporal"):
        rep = b.temporal(key, cls)
        st.markdown(f"p({b.classes[cls]}) on the clip as it is: **{rep.base_prob:.2f}**. "
                    + ("The prediction **depends on the order of frames**." if rep.order_matters
                       else "Reversing or shuffling the frames changes it by less than 0.1."))
        st.table({"perturbation": ["reverse the frames", "freeze (repeat frame 1)", "shuffle the frames"],
                  "Δ p(target)": [f"{rep.reverse:+.3f}", f"{rep.freeze:+.3f}", f"{rep.shuffle:+.3f}"],
                  "new top-1": [b.classes[rep.top1[k]] for k in ("reverse", "freeze", "shuffle")]})
        st.plotly_chart(render.temporal_figure(rep.blank), key="vw_blank", width="stretch")

    # ---------------------------------------------------------------- downloads
    bundle = render.export_bundle(key, cls, b.classes[cls], method, layer, ov, raw, b.spec.fps)
    files = bundle.files()
    for col, (suffix, label, mime) in zip(st.columns(4), (
            ("_overlay.webm", "Overlay video (.webm)", "video/webm"), ("_overlay.gif", "Overlay GIF", "image/gif"),
            ("_grid.png", "Frame grid (.png)", "image/png"), ("_maps.npy", "Maps (.npy, T'×h×w)", "application/octet-stream")),
            strict=True):
        col.download_button(label, files[suffix], f"{bundle.stem}{suffix}", mime, key=f"vw_dl{suffix}", on_click="ignore")
