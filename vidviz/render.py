"""Rendering: jet overlays (red = intense, as in the seed), frame grids, videos, GIFs, export
bundles, the seed's prediction lines, and every plotly figure the pages show."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from vidviz.data.video import write_video
from vidviz.explain.temporal import importance_curve


def format_top(top: list[tuple[int, float]], classes: list[str], k: int = 5) -> list[str]:
    """The seed's format: ``1. Putting [something]: 0.84``."""
    return [f"{i + 1}. {classes[c]}: {p:.2f}" for i, (c, p) in enumerate(top[:k])]


def jet(m: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (H, W) to RGB uint8 (H, W, 3) with the jet colormap (blue low, red high)."""
    u8 = np.clip(np.asarray(m) * 255.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def overlay(frames: np.ndarray, maps: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend jet maps over frames: frames uint8 (T, H, W, 3), maps (T, H', W') in [0, 1] -> (T, H, W, 3).

    Maps of another size are resized to the frames (bilinear).
    """
    t, h, w, _ = frames.shape
    if maps.shape[1:] != (h, w):
        maps = np.stack([cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) for m in maps])
    heat = jet(np.ascontiguousarray(maps).reshape(t * h, w)).reshape(t, h, w, 3)  # (T, H, W, 3), one call
    flat = cv2.addWeighted(frames.reshape(t * h, w, 3), 1.0 - alpha, heat.reshape(t * h, w, 3), alpha, 0.0)
    return flat.reshape(t, h, w, 3)


COMPARE_LABEL_W, COMPARE_HEAD_H, COMPARE_BAR_W = 170, 18, 56  # the compare grid's margins (pixels)


def compare_grid(frames: np.ndarray, rows: Sequence[tuple[str, np.ndarray]], tile: int = 80,
                 alpha: float = 0.5) -> np.ndarray:
    """One image: a row per item (its label on the left), a column per frame (numbered on top), a colour bar.

    frames: uint8 (T, H, W, 3); each row's maps (T, H', W') in [0, 1] on the one scale the colour bar shows.
    Returns uint8 (HEAD + n*tile, LABEL + T*tile + BAR, 3).
    """
    t = frames.shape[0]
    small = np.stack([cv2.resize(f, (tile, tile), interpolation=cv2.INTER_AREA) for f in frames])  # (T, tile, tile, 3)
    width = COMPARE_LABEL_W + t * tile + COMPARE_BAR_W
    img = np.full((COMPARE_HEAD_H + len(rows) * tile, width, 3), 255, np.uint8)
    for i in range(t):
        cv2.putText(img, str(i + 1), (COMPARE_LABEL_W + i * tile + tile // 2 - 6, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
    for r, (label, maps) in enumerate(rows):
        y = COMPARE_HEAD_H + r * tile
        strip = overlay(small, np.asarray(maps, dtype=np.float32), alpha)  # (T, tile, tile, 3)
        img[y:y + tile, COMPARE_LABEL_W:COMPARE_LABEL_W + t * tile] = strip.transpose(1, 0, 2, 3).reshape(tile, -1, 3)
        words, line = str(label).split(), ""
        lines = []
        for w in words:  # wrap the label to the column
            if line and cv2.getTextSize(f"{line} {w}", cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)[0][0] > COMPARE_LABEL_W - 8:
                lines.append(line)
                line = w
            else:
                line = f"{line} {w}".strip()
        lines.append(line)
        for k, text in enumerate(lines[:5]):
            cv2.putText(img, text, (4, y + 16 + 14 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    x0, top, bottom = COMPARE_LABEL_W + t * tile + 6, COMPARE_HEAD_H, img.shape[0] - 1
    ramp = np.linspace(1.0, 0.0, bottom - top + 1)[:, None].repeat(14, 1)  # 1 at the top, 0 at the bottom
    img[top:bottom + 1, x0:x0 + 14] = jet(ramp)
    for v in (1.0, 0.5, 0.0):
        yy = int(round(top + (1 - v) * (bottom - top)))
        cv2.putText(img, f"{v:g}", (x0 + 17, min(max(yy + 4, top + 8), bottom)), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return img


def signed_overlay(frames: np.ndarray, diff: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Red where ``diff`` > 0, blue where < 0 (a contrast map scaled to [-1, 1]) over frames (T, H, W, 3).

    The frames are shown in grey, so that red and blue stand out on a reddish scene too, and the
    opacity grows with the square root of |diff|, so weak differences stay visible.
    """
    t, h, w, _ = frames.shape
    grey = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # (T, H, W)
    out = np.empty_like(frames)
    for i in range(t):
        d = np.clip(cv2.resize(diff[i].astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR), -1, 1)
        col = np.zeros((h, w, 3), np.float32)
        col[..., 0] = (d > 0) * 255.0  # the sign picks the colour, the magnitude its opacity
        col[..., 2] = (d < 0) * 255.0
        a = (np.sqrt(np.abs(d)) * alpha)[..., None]
        out[i] = (grey[i][..., None] * (1 - a) + col * a).round().astype(np.uint8)
    return out


def draw_boxes(frames: np.ndarray, boxes: Sequence[Sequence] | None, scale: float, offset: tuple[int, int]) -> np.ndarray:
    """Draw ground-truth boxes (per frame: objects with ``role``/``xyxy``) on square-cropped frames.

    ``scale`` maps source pixels to frame pixels after subtracting ``offset`` (the crop's x0, y0).
    Objects acted on are drawn white, hands yellow.
    """
    if not boxes:
        return frames
    out = frames.copy()
    colours = {"object": (255, 255, 255), "hand": (255, 220, 0)}
    for i, fb in enumerate(boxes):
        for b in fb:
            if b.role not in colours:
                continue
            x1, y1, x2, y2 = b.xyxy
            p1 = (int((x1 - offset[0]) * scale), int((y1 - offset[1]) * scale))
            p2 = (int((x2 - offset[0]) * scale), int((y2 - offset[1]) * scale))
            cv2.rectangle(out[i], p1, p2, colours[b.role], 1)
    return out


def frame_grid(images: np.ndarray, cols: int = 8, pad: int = 2, labels: Sequence[str] | None = None,
               title: str | None = None) -> np.ndarray:
    """Tile uint8 (T, H, W, 3) images into one (rows*H, cols*W, 3) image, with optional labels and a title line."""
    t, h, w, _ = images.shape
    cols = max(1, min(cols, t))
    rows = (t + cols - 1) // cols
    top = 18 if title else 0
    grid = np.full((top + rows * (h + pad) - pad, cols * (w + pad) - pad, 3), 255, np.uint8)
    if title:
        cv2.putText(grid, title, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for i in range(t):
        r, c = divmod(i, cols)
        tile = images[i].copy()
        if labels is not None:
            cv2.putText(tile, str(labels[i]), (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 2, cv2.LINE_AA)
            cv2.putText(tile, str(labels[i]), (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        y = top + r * (h + pad)
        grid[y:y + h, c * (w + pad):c * (w + pad) + w] = tile
    return grid


def preview_strip(frames: np.ndarray, raw: np.ndarray | None, every: int = 4, alpha: float = 0.5) -> np.ndarray:
    """Every ``every``-th frame side by side (the gallery's cards), with the raw map (T', h, w) overlaid.

    frames: uint8 (T, S0, S0, 3). Returns (S0, n*S0, 3).
    """
    from vidviz.explain.cam import normalise, upsample  # torch: only for a page that shows maps

    shown = frames[::every]  # (n, S0, S0, 3)
    if raw is not None:
        up = normalise(upsample(raw, frames.shape[:3]))[::every]  # (n, S0, S0) in [0, 1]
        shown = overlay(shown, up, alpha)
    return np.concatenate(list(shown), axis=1)


def png_bytes(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def video_bytes(frames: np.ndarray, fps: float = 4.0, suffix: str = ".webm", min_side: int = 224) -> bytes:
    """Encode frames (T, H, W, 3) as a browser-playable video (VP8 WebM by default), upscaled to ``min_side``."""
    t, h, w, _ = frames.shape
    if min(h, w) < min_side:  # browsers show tiny videos tiny
        s = min_side / min(h, w)
        frames = np.stack([cv2.resize(f, (int(round(w * s)) // 2 * 2, int(round(h * s)) // 2 * 2),
                                      interpolation=cv2.INTER_NEAREST if s >= 2 else cv2.INTER_LINEAR) for f in frames])
    with tempfile.TemporaryDirectory() as d:
        p = write_video(Path(d) / f"clip{suffix}", frames, fps)
        return p.read_bytes()


def gif_bytes(frames: np.ndarray, fps: float = 4.0) -> bytes:
    """Encode frames (T, H, W, 3) as a looping GIF."""
    from PIL import Image

    imgs = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0)
    return buf.getvalue()


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


@dataclass(frozen=True)
class ExportBundle:
    """What a user can take away from one explained clip: the viewer's downloads and ``vidviz explain``'s files.

    ``files()`` maps each file's suffix to a function that encodes it, so nothing is encoded
    until asked for.
    """

    stem: str  # file name stem: <clip>_<class>_<method>_<layer>
    overlays: np.ndarray = field(repr=False)  # uint8 (T, H, W, 3) frames with the map blended in
    raw: np.ndarray = field(repr=False)  # float32 (T', h, w) the map at the layer's native resolution
    fps: float  # playback rate of the sampled frames
    title: str  # class, method and layer, written above the frame grid

    @property
    def labels(self) -> list[str]:
        """Per frame: its number and its share of the map."""
        curve = importance_curve(self.raw, len(self.overlays))
        return [f"{i + 1}: {100 * v:.0f}%" for i, v in enumerate(curve)]

    def files(self) -> dict[str, Callable[[], bytes]]:
        return {
            "_overlay.webm": lambda: video_bytes(self.overlays, self.fps),
            "_overlay.gif": lambda: gif_bytes(self.overlays, self.fps),
            "_grid.png": lambda: png_bytes(frame_grid(self.overlays, cols=8, labels=self.labels, title=self.title)),
            "_maps.npy": lambda: npy_bytes(np.asarray(self.raw, dtype=np.float32)),
        }


def frame_span(j: int, steps: int, frames: int) -> str:
    """The input frames (1-based, "a-b") that time step ``j`` of ``steps`` covers, over ``frames`` frames."""
    a, b = j * frames // steps + 1, (j + 1) * frames // steps
    return f"{a}-{b}" if b > a else str(max(a, b))


def export_stem(key: str, cls: int, method: str, layer: str) -> str:
    """File name stem of an export: ``<clip>_<class>_<method>_<layer>``."""
    return f"{Path(key).name.replace(':', '_')}_{cls}_{method.replace('+', 'p')}_{layer}"


def export_bundle(key: str, cls: int, class_name: str, method: str, layer: str, overlays: np.ndarray,
                  raw: np.ndarray, fps: float) -> ExportBundle:
    return ExportBundle(export_stem(key, cls, method, layer), overlays, raw, fps,
                        f"{class_name} | {method} at {layer} | logit target")


# ---------------------------------------------------------------- plotly figures

def importance_figure(curves: dict[str, np.ndarray], selected: int | None = None, window: tuple[int, int] | None = None,
                      title: str = "Per-frame importance"):
    """Line per class of each frame's share of the map; the selected frame and the action window marked.

    Built as a plain plotly dict (no validation pass): it is redrawn on every class switch.
    """
    data = [{"type": "scatter", "mode": "lines+markers", "name": name, "x": list(range(1, len(y) + 1)),
             "y": np.asarray(y, dtype=float).round(5).tolist()} for name, y in curves.items()]
    shapes, annotations = [], []
    if window is not None:
        shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": window[0] + 0.5, "x1": window[1] + 1.5,
                       "y0": 0, "y1": 1, "fillcolor": "green", "opacity": 0.12, "line": {"width": 0}})
        annotations.append({"x": window[0] + 0.5, "y": 1, "xref": "x", "yref": "paper", "text": "action",
                            "showarrow": False, "xanchor": "left", "yanchor": "bottom"})
    if selected is not None:
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": selected + 1, "x1": selected + 1,
                       "y0": 0, "y1": 1, "line": {"color": "red", "dash": "dash"}})
    layout = {"title": {"text": title}, "xaxis": {"title": {"text": "frame"}},
              "yaxis": {"title": {"text": "share of the map"}}, "height": 280,
              "margin": {"l": 40, "r": 10, "t": 40, "b": 40}, "legend": {"orientation": "h", "y": -0.3},
              "shapes": shapes, "annotations": annotations}
    return {"data": data, "layout": layout}


def confusion_table(conf: np.ndarray, classes: Sequence[str]):
    """The confusion matrix as a shaded table (a pandas Styler): rows ``i: true class`` (full names), columns
    predicted class indices (the page gives each header its name on hover); readable from 12 to 174 classes,
    and each cell selectable (the gallery drills down on a click)."""
    import pandas as pd

    k = len(classes)
    df = pd.DataFrame(conf, index=[f"{i}: {c}" for i, c in enumerate(classes)], columns=[str(j) for j in range(k)])
    df.index.name = "true \\ predicted"
    top = max(int(conf.max()), 1)

    def shade(v):  # white to red, darker with more clips; white text on the darkest cells
        a = v / top
        return (f"background-color: rgba(200, 30, 30, {0.08 + 0.85 * a:.2f}); color: {'white' if a > 0.6 else 'black'}"
                if v else "color: #bbb")

    return df.style.map(shade)


def temporal_figure(blank: np.ndarray, title: str = "Blanking one frame: change in target probability"):
    import plotly.graph_objects as go

    y = np.asarray(blank, dtype=float)
    fig = go.Figure(go.Bar(x=list(range(1, len(y) + 1)), y=y.tolist(),
                           marker_color=["#d62728" if v < 0 else "#1f77b4" for v in y]))
    fig.update_layout(title=title, xaxis_title="blanked frame", yaxis_title="Δ p(target)", height=260,
                      margin=dict(l=40, r=10, t=40, b=40))
    return fig


def quality_figure(summary, metric: str, title: str | None = None):
    """Mean and 95% CI of one metric per method (a quality summary's rows), as bars."""
    rows = summary[summary["metric"] == metric]
    return {"data": [{"type": "bar", "x": rows["method"].astype(str).tolist(), "y": rows["mean"].astype(float).tolist(),
                      "error_y": {"type": "data", "array": rows["ci95"].fillna(0).astype(float).tolist()}}],
            "layout": {"title": {"text": title or metric}, "height": 300, "margin": {"l": 40, "r": 10, "t": 40, "b": 40},
                       "yaxis": {"title": {"text": "mean ± 95% CI"}}}}
