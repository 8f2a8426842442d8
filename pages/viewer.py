"""Grad-CAM viewer: one clip, its predictions, and the heatmap player (class switch, scrubbing and playback in the browser)."""

import streamlit as st

import ui
from vidviz import render
from vidviz.explain.cam import contrast
from vidviz.explain.methods import METHOD_INFO, METHODS, SETTINGS
from vidviz.explain.temporal import importance_curve

ui.run_through_app()  # first: a page always runs inside app.py (navigation, title, sidebar)
b = ui.backend()
ds = b.dataset
qp = st.query_params
VIDEO_TYPES = ["webm", "mp4", "avi", "mkv", "mov", "m4v"]


CLASS_PARAMS = ("below", "classes")  # the class of the sections below and the compared classes, per clip
CLASS_WIDGETS = ("vw_below", "vw_cmp_classes")  # their pickers (stable keys: no widget left behind per view)
DEFAULT_METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam")


def _show_clip(clip_id: str | None) -> None:
    """Any change of clip opens a new view on that clip's own top class: the player's parameters go."""
    for k in ("clip", *ui.PLAYER_PARAMS, *CLASS_PARAMS):
        if k in st.query_params:
            del st.query_params[k]
    if clip_id:
        st.query_params["clip"] = clip_id


def _step(delta, ids):
    cur = st.session_state.get("vw_clip", ids[0])
    i = ids.index(cur) if cur in ids else 0
    st.session_state.vw_clip = ids[(i + delta) % len(ids)]
    _show_clip(st.session_state.vw_clip)


COMPARE_KINDS = ["methods", "layers", "classes", "checkpoints"]


def _compare(kind: str, cls: int) -> None:
    """The compare view: one row per chosen item, one column per frame, one colour scale and a colour bar; the
    rows' per-frame importance curves in one plot. Reads the page's clip (``key``, ``opened``, ``rec``)."""
    frames, names = opened.clip.frames, b.classes
    rows: list = []  # (label, raw map (T', h, w))
    shared = False  # one raw scale for every row (same method and layer), else each row scaled to its own max
    if kind == "methods":
        chosen = st.multiselect("Methods (same class, same layer)", METHODS, default=list(DEFAULT_METHODS),
                                key="cmp_methods", bind="query-params", max_selections=8,
                                format_func=lambda m: METHOD_INFO[m].name)
        with st.spinner(f"Computing {len(chosen)} methods at {layer}...", show_time=True):
            rows = [(METHOD_INFO[m].name, b.explain(key, [cls], m, layer, settings if m == method else None
                                                    ).map_for(cls)) for m in chosen]
        what = f"**{names[cls]}** at {layer}"
    elif kind == "layers":
        layers = b.model.layer_names[::-1]
        chosen = st.multiselect("Layers (same class, same method)", layers, default=layers, key="cmp_layers",
                                bind="query-params")
        if METHOD_INFO[method].input_level:
            st.info(f"{METHOD_INFO[method].name} attributes the input's pixels: it has no layers to compare.")
            chosen = []
        maps = {lay: b.explain(key, [cls], method, lay).map_for(cls) for lay in chosen}
        rows = [(f"{lay} ({'x'.join(map(str, m.shape))})", m) for lay, m in maps.items()]
        what = f"**{names[cls]}**, {METHOD_INFO[method].name}"
    elif kind == "classes":
        true_idx = b.true_class(key)
        default = list(dict.fromkeys([c for c in (true_idx, top[0][0], top[1][0]) if c is not None]))[:2]
        asked = [int(c) for c in qp.get("classes", "").split(",") if c.isdigit() and int(c) < len(names)] \
            if rec is not None and qp.get("clip") == rec.id else []
        if "vw_cmp_classes" not in st.session_state:
            st.session_state.vw_cmp_classes = asked or default
        chosen = st.multiselect("Classes (same method, same layer; first: the true label)", list(range(len(names))),
                                key="vw_cmp_classes", format_func=lambda c: f"{names[c]}  ({opened.probs[c]:.2f})",
                                on_change=lambda: rec is not None and st.query_params.update(
                                    classes=",".join(map(str, st.session_state.vw_cmp_classes))))
        expl = b.explain(key, list(chosen), method, layer, settings or None) if chosen else None
        rows = [(names[c], expl.map_for(c)) for c in chosen]
        shared = True
        what = f"{METHOD_INFO[method].name} at {layer}"
    else:
        others = {label: path for label, path in ui.checkpoints().items() if path != b.model.checkpoint_path
                  and str(path) != str(b.model.checkpoint_path)}
        chosen = st.multiselect("Other checkpoints (the class matched by name)", list(others), key="cmp_ckpts",
                                bind="query-params")
        if rec is None and chosen:
            st.info("An uploaded clip is compared within one checkpoint; open a dataset clip to compare checkpoints.")
            chosen = []
        rows = [(f"this checkpoint ({layer})", b.explain(key, [cls], method, layer, settings or None).map_for(cls))]
        for label in chosen:
            other = ui.backend_for(others[label])
            if names[cls] not in other.classes:
                st.warning(f"{label} has no class named {names[cls]!r}: not shown.")
                continue
            c2 = other.classes.index(names[cls])
            rows.append((f"{label} ({other.model.last_layer})",
                         other.explain(key, [c2], method, None, settings or None).map_for(c2)))
        what = f"**{names[cls]}**, {METHOD_INFO[method].name}"
    if not rows:
        st.info("Choose what to compare.")
        return
    scale = max(max(float(m.max()) for _, m in rows), 1e-12) if shared else None
    shown = [(label, b.display_maps(m, key, "global", scale) if shared else b.display_maps(m, key, "clip"))
             for label, m in rows]  # each (T, S0, S0) in [0, 1]
    st.image(render.compare_grid(frames, shown), width="stretch", output_format="PNG")
    st.caption(f"{len(rows)} {kind} × {len(frames)} frames: {what}. One colour scale (jet, colour bar on the "
               "right): " + ("the raw map values, from 0 to the largest of all rows." if shared else
                             "each row as a share of its own maximum (the rows' raw values have different units)."))
    if kind == "classes" and len(rows) == 2:
        (la, _), (lb, _) = rows
        diff = b.display_signed(contrast(expl, chosen[0], chosen[1]), key)  # (T, S0, S0) in [-1, 1]
        st.markdown(f"**Difference A − B** (red: more evidence for *{la}*, blue: for *{lb}*)")
        st.image(list(render.signed_overlay(frames, diff)), width=80, caption=[str(i + 1) for i in range(len(frames))],
                 output_format="JPEG")
    curves = {label: importance_curve(m, len(frames)) for label, m in rows}
    st.plotly_chart(render.importance_figure(curves, title="Per-frame importance of each row"),
                    key="vw_compare_curves", width="stretch")


with ui.plain_errors():
    source = st.radio("Source", ["Dataset clip", "Upload a video"], horizontal=True, key="vw_source",
                      on_change=lambda: _show_clip(st.session_state.get("vw_clip")
                                                   if st.session_state.vw_source == "Dataset clip" else None))
    if source == "Dataset clip":
        ids = [r.id for r in ds.split(ui.split())] or [r.id for r in ds.records]
        if not ids:
            st.warning("This dataset has no readable clips.")
            st.stop()
        if "vw_clip" not in st.session_state:
            st.session_state.vw_clip = qp.get("clip", ids[0])
        c1, c2, c3 = st.columns([4, 1, 1])
        c1.text_input("Clip id", key="vw_clip", on_change=lambda: _show_clip(st.session_state.vw_clip.strip()),
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
    top = opened.top
    T = len(opened.clip.frames)

    # ---------------------------------------------------------------- the seed's header
    head_l, head_r = st.columns([3, 2])
    with head_l:
        title = f"True label: {rec.template}" if rec is not None and rec.template else "True label: (unknown)"
        st.markdown(f"#### {title}")
        st.markdown("  \n".join(render.format_top(top, b.classes, 2)))
        if rec is not None:
            st.caption(f"Objects: {', '.join(rec.placeholders) or '-'} · clip {rec.id} · {rec.split}")
        else:
            st.caption("An uploaded video (not linked in the URL).")
        if opened.clip.padded:
            st.caption(f"The video has {opened.clip.info.num_frames} frames, fewer than the model's window: its last "
                       f"frame fills the last {opened.clip.padded} of the {T} the model reads.")
    with head_r:
        m1, m2 = st.columns(2)
        method = m1.selectbox("Method", METHODS, key="method", bind="query-params",
                              help="; ".join(f"{m}: {i.name} ({i.paper}), costs {i.cost}" for m, i in METHOD_INFO.items()))
        layers = b.model.layer_names[::-1]
        layer = m2.selectbox("Layer (last block first)", layers, index=layers.index(b.model.last_layer), key="layer",
                             bind="query-params", disabled=METHOD_INFO[method].input_level,
                             help="Module paths of the model. An input attribution (Captum) attributes the pixels: "
                                  "it has no layer. " + b.model.notes)
        settings = {}
        if method in SETTINGS and SETTINGS[method]:
            with st.expander(f"{METHOD_INFO[method].name} settings"):
                for name, s in SETTINGS[method].items():  # each kept in the URL
                    settings[name] = st.number_input(f"{name}: {s.meaning}", type(s.default)(s.low),
                                                     type(s.default)(s.high), s.default, key=name,
                                                     bind="query-params")
        st.caption("Heatmaps show the method's map of the target class **logit** (pre-softmax); red = intense. "
                   "Pick the class, frame, opacity and normalisation in the player: it answers in the browser.")

    # ---------------------------------------------------------------- the player: one view per clip opened
    view_id = (key, method, layer, tuple(sorted(settings.items())))
    info = METHOD_INFO[method]
    # a perturbation method takes seconds on a CPU: say what is being computed while it runs
    with st.spinner(f"Computing {info.name} at {layer} ({info.cost})...", show_time=True):
        if st.session_state.get("vw_view_id") != view_id:
            first = top[0][0]
            bar = st.empty()  # a progress bar for the methods that count their passes (perturbation, Captum's)
            unit = "clip evaluations" if info.input_level else "channels"
            expl = b.explain(key, [first], method, layer, settings or None, progress=lambda d, n: bar.progress(
                d / n, text=f"{info.name}: {d} of {n} {unit}"))
            bar.empty()
            curve = importance_curve(expl.map_for(first), T)
            st.session_state.vw_steps = expl.maps.shape[1]  # the layer's time steps (T')
            init = ui.player_init(key, rec.id if rec is not None else None, first, len(b.classes), T,
                                  int(curve.argmax()) + 1)
            st.session_state.vw_view = st.session_state.get("vw_view", 0) + 1
            for k in CLASS_WIDGETS:  # a new view: the class pickers below start from its defaults (or the link's)
                st.session_state.pop(k, None)
            st.session_state.vw_view_id, st.session_state.vw_init = view_id, init
        init = st.session_state.vw_init
        asked = ui.player(b, key, method, layer, init, st.session_state.vw_view, settings)
    steps = st.session_state.get("vw_steps", T)
    if steps != T:  # a layer that strides in time (a tubelet, a temporal pooling): say which frames each map covers
        st.caption(f"This layer has {steps} maps in time for the {T} frames: " + ", ".join(
            f"map {j + 1} covers frames {render.frame_span(j, steps, T)}" for j in range(min(steps, 4)))
            + (" ..." if steps > 4 else "") + ". The player interpolates between them.")
    if asked is not None:  # a class outside the payload: its map is computed, and the player switches to it
        st.session_state.vw_init = {**init, "cls": asked}
        st.rerun()

    # ---------------------------------------------------------------- analysis of one class, server side
    st.divider()
    order = [c for c, _ in top]
    probs = opened.probs
    linked = rec is not None and qp.get("clip") == rec.id  # class parameters in the URL apply to this clip only

    def url_class(name: str, default: int, allowed) -> int:
        v = qp.get(name) if linked else None
        return int(v) if v is not None and v.isdigit() and int(v) in allowed else default

    def to_url(name: str, widget: str) -> None:
        if rec is not None:  # an upload has no link
            st.query_params[name] = str(st.session_state[widget])

    cls = st.selectbox("Class for the temporal tests and downloads below (top predictions first)", order,
                       index=order.index(url_class("below", init["cls"], order)), key="vw_below",
                       format_func=lambda c: f"{b.classes[c]}  ({probs[c]:.2f})",
                       on_change=to_url, args=("below", "vw_below"))

    # ---------------------------------------------------------------- compare side by side: rows x frames
    kind = st.segmented_control("Compare side by side", COMPARE_KINDS, key="compare", bind="query-params",
                                help="Rows of maps over the clip's frames on one colour scale: several methods, "
                                     "layers or classes, or other checkpoints on this clip.")
    if kind:
        with st.container(key="vw_compare"):
            _compare(kind, cls)
    if st.toggle("Temporal perturbation tests (reverse, freeze, shuffle, blank each frame)", key="temporal",
                 bind="query-params"):
        rep = b.temporal(key, cls)
        st.markdown(f"p({b.classes[cls]}) on the clip as it is: **{rep.base_prob:.2f}**. "
                    + ("The prediction **depends on the order of frames**." if rep.order_matters
                       else "Reversing or shuffling the frames changes it by less than 0.1."))
        st.table({"perturbation": ["reverse the frames", "freeze (repeat frame 1)", "shuffle the frames"],
                  "Δ p(target)": [f"{rep.reverse:+.3f}", f"{rep.freeze:+.3f}", f"{rep.shuffle:+.3f}"],
                  "new top-1": [b.classes[rep.top1[k]] for k in ("reverse", "freeze", "shuffle")]})
        st.plotly_chart(render.temporal_figure(rep.blank), key="vw_blank", width="stretch")

    # ---------------------------------------------------------------- downloads (encoded only when clicked)
    def _bundle():
        raw = b.explain(key, [cls], method, layer, settings or None).map_for(cls)  # (T', h, w)
        ov = render.overlay(opened.clip.frames, b.display_maps(raw, key), 0.5)
        return render.export_bundle(key, cls, b.classes[cls], method, where, ov, raw, b.spec.fps)

    where = "input" if METHOD_INFO[method].input_level else layer  # an input attribution has no layer
    stem = render.export_stem(key, cls, method, where)
    st.caption(f"Downloads: **{b.classes[cls]}**, {method} at {where}.")
    for col, (suffix, label, mime) in zip(st.columns(4), (
            ("_overlay.webm", "Overlay video (.webm)", "video/webm"), ("_overlay.gif", "Overlay GIF", "image/gif"),
            ("_grid.png", "Frame grid (.png)", "image/png"), ("_maps.npy", "Maps (.npy, T'×h×w)", "application/octet-stream")),
            strict=True):
        col.download_button(label, lambda suffix=suffix: _bundle().files()[suffix](), f"{stem}{suffix}", mime,
                            key=f"vw_dl{suffix}", on_click="ignore")
