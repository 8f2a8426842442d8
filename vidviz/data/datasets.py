"""Dataset readers: one per on-disk format, all yielding :class:`ClipRecord`.

* Something-Something v2: ``labels.json`` (template without brackets -> id),
  ``train.json`` / ``validation.json`` / ``test.json`` (entries with ``id``, ``label``,
  ``template``, ``placeholders``) and ``<id>.webm`` videos. The class index is the id
  ``labels.json`` gives, never a re-sort.
* Something-Something v1 and Jester: ``;``-separated CSVs (``*-labels.csv``,
  ``*-train.csv``, ``*-validation.csv``, ``*-test.csv``) and one folder of ``%05d.jpg``
  frames per video.
* A plain folder of videos without labels.

Something-Else box annotations (``video id -> [{name, labels: [{box2d, category, ...}]}]``)
and action windows attach to clips when present. A class subset (a text file listing
templates, one per line) remaps indices to positions in that file, for every split alike.
A dataset with some bad clips loads the good ones and lists the bad ones in ``problems``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidviz.data.io import check_id, read_json, safe_child
from vidviz.data.video import FRAME_EXTENSIONS, VIDEO_EXTENSIONS
from vidviz.errors import DatasetError, UnsafePathError, VidvizError

SPLITS = ("train", "validation", "test")
MAX_CLASS_ID = 100_000  # Something-Something has 174 classes, Kinetics 700: a larger id is a broken file
V2_VIDEO_DIRS = ("20bn-something-something-v2", "videos", ".")


def strip_brackets(template: str) -> str:
    return template.replace("[", "").replace("]", "")


def _class_key(name: str) -> str:
    return " ".join(strip_brackets(name).lower().split())


def match_classes(dataset_classes: list[str], model_classes: list[str]) -> np.ndarray:
    """For each dataset class, the model's class of the same name (-1: the model has none), matched on names
    with the placeholders' brackets, case and spacing ignored ("Pushing [something]" = "pushing something")."""
    index = {}
    for i, name in enumerate(model_classes):
        index.setdefault(_class_key(name), i)
    return np.array([index.get(_class_key(n), -1) for n in dataset_classes], dtype=np.int64)


@dataclass(frozen=True)
class ClipRecord:
    """One clip of a dataset, whatever its on-disk format."""

    id: str
    path: Path  # a video file, or a folder of frames
    label: int | None  # class index, None when unknown (test splits, plain folders)
    template: str | None  # class name, e.g. "Putting [something] on a surface"
    placeholders: tuple[str, ...]  # e.g. ("red cube",)
    split: str


@dataclass(frozen=True)
class Box:
    role: str  # "object", "hand", "distractor" or "cover"
    category: str  # the object's name ("red cube") or "hand"
    xyxy: tuple[float, float, float, float]  # in source-frame pixels
    index: int = 0  # "object 0" is the first placeholder, the thing acted on


XYXY = tuple[float, float, float, float]  # a box: x1, y1, x2, y2


def box_mask(shape: tuple[int, int], box: XYXY | Sequence[XYXY]) -> np.ndarray:
    """bool (h, w): inside ``box`` (x1, y1, x2, y2; fractional edges round outwards), or inside any of several
    boxes (their union)."""
    h, w = shape
    m = np.zeros((h, w), bool)
    for x1, y1, x2, y2 in ([box] if np.isscalar(box[0]) else box):
        m[max(0, int(np.floor(y1))):min(h, int(np.ceil(y2))), max(0, int(np.floor(x1))):min(w, int(np.ceil(x2)))] = True
    return m


@dataclass
class VideoDataset:
    """A loaded dataset: classes, clip records per split, annotations and problems."""

    root: Path
    format: str  # "ssv2", "ssv1", "jester" or "folder"
    classes: list[str]  # index -> class name (template)
    records: list[ClipRecord]
    problems: list[tuple[str, str]] = field(default_factory=list)  # (file or id, reason)
    windows: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> action window
    box_files: list[Path] = field(default_factory=list)  # Something-Else box files, parsed on first use of boxes
    _boxes: dict[str, list[list[Box]]] | None = field(default=None, repr=False)
    _by_id: dict[str, ClipRecord] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)

    def __post_init__(self):
        self._by_id = {r.id: r for r in self.records}

    @property
    def boxes(self) -> dict[str, list[list[Box]]]:
        """id -> boxes per source frame, parsed on first use (Something-Else files take seconds to parse)."""
        with self._lock:
            if self._boxes is None:
                boxes: dict[str, list[list[Box]]] = {}
                for f in self.box_files:
                    try:
                        boxes.update(parse_something_else(read_json(f), f))
                    except VidvizError as err:
                        self.problems.append((str(f), str(err)))
                self._boxes = boxes
            return self._boxes

    @property
    def has_boxes(self) -> bool:
        """Whether box annotations are present (without parsing them)."""
        return bool(self.box_files)

    @property
    def name(self) -> str:
        return self.root.name

    def split(self, split: str | None) -> list[ClipRecord]:
        return [r for r in self.records if split in (None, "all") or r.split == split]

    @property
    def splits(self) -> list[str]:
        present = {r.split for r in self.records}
        return [s for s in (*SPLITS, "all") if s in present] or ["all"]

    def get(self, clip_id: str) -> ClipRecord:
        try:
            return self._by_id[str(clip_id)]
        except KeyError:
            # the dataset's name, not its path: the app shows this message to people who never see the server's disk
            raise DatasetError(f"no clip with id {clip_id!r} in the dataset {self.name!r}") from None

    def __contains__(self, clip_id: str) -> bool:
        return str(clip_id) in self._by_id

    def fingerprint(self) -> str:
        """Hash of the label and split files (not the videos): changes when the dataset does.

        Computed once: the records are fixed when the dataset is opened, and every page run and store
        lookup asks for it (hashing every record each time costs seconds on a large dataset).
        """
        if self._fingerprint is None:
            h = hashlib.sha256(self.format.encode())
            h.update(json.dumps(self.classes).encode())
            for r in self.records:
                h.update(f"{r.id}|{r.label}|{r.split}|{r.path.name}\n".encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint


# ---------------------------------------------------------------- Something-Something v2

def _find_video_dir(root: Path) -> Path:
    for d in V2_VIDEO_DIRS:
        p = (root / d)
        if p.is_dir() and any(p.glob("*.webm")):
            return p
    return root / V2_VIDEO_DIRS[0]


def read_subset(path: str | Path) -> list[str]:
    """A class subset file: one template per line (blank lines and ``#`` comments ignored)."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError("class subset file not found", p)
    try:
        lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError:
        raise DatasetError("not a text file (expected one template per line)", p) from None
    names = [ln for ln in lines if ln and not ln.startswith("#")]
    if not names:
        raise DatasetError("class subset file lists no template", p)
    return names


def read_ssv2(root: str | Path, subset: list[str] | None = None) -> VideoDataset:
    root = Path(root).resolve()
    labels_path = root / "labels.json"
    labels = read_json(labels_path)
    if not isinstance(labels, dict) or not labels:
        raise DatasetError("expected an object mapping templates to ids", labels_path)
    ids: dict[str, int] = {}
    for name, idx in labels.items():
        try:
            ids[str(name)] = int(idx)
        except (TypeError, ValueError):
            raise DatasetError(f"class {name!r} has a non-integer id {idx!r}", labels_path) from None
    if len(set(ids.values())) != len(ids):
        raise DatasetError("two templates share one id", labels_path)
    if ids and max(ids.values()) >= MAX_CLASS_ID:  # the class list is sized by the largest id
        name, idx = max(ids.items(), key=lambda kv: kv[1])
        raise DatasetError(f"class {name!r} has id {idx}; class ids must be below {MAX_CLASS_ID}", labels_path)
    k = max(ids.values()) + 1
    classes = [""] * k
    for name, idx in ids.items():
        if idx < 0:
            raise DatasetError(f"class {name!r} has a negative id", labels_path)
        classes[idx] = name
    remap = None
    if subset is not None:
        remap, sub_classes = {}, []
        for t in subset:
            key = strip_brackets(t)
            if key not in ids:
                raise DatasetError(f"subset template {t!r} is not a class of labels.json", labels_path)
            remap[ids[key]] = len(sub_classes)
            sub_classes.append(t)
        classes = sub_classes
    templates_seen: dict[int, str] = {}
    video_dir = _find_video_dir(root)
    records, problems = [], []
    first_seen: dict[str, str] = {}  # clip id -> where it was first listed
    found_split = False
    for split in SPLITS:
        sp = root / f"{split}.json"
        if not sp.exists():
            continue
        found_split = True
        entries = read_json(sp)
        if not isinstance(entries, list):
            raise DatasetError("expected a list of clip entries", sp)
        for n, e in enumerate(entries):
            where = f"{sp.name} entry {n}"
            if not isinstance(e, dict) or "id" not in e:
                problems.append((where, "entry has no 'id'"))
                continue
            try:
                cid = check_id(str(e["id"]), sp)
                path = safe_child(video_dir, f"{cid}.webm")
            except UnsafePathError as err:
                problems.append((where, str(err)))
                continue
            if cid in first_seen:  # counted twice, it would skew every figure of its split
                raise DatasetError(f"clip id {cid!r} is listed twice: {first_seen[cid]} and {where}", root)
            first_seen[cid] = where
            template = e.get("template")
            label = None
            if template is not None:
                key = strip_brackets(str(template))
                if key not in ids:
                    problems.append((f"{sp.name} id {cid}", f"template {template!r} is not a class of labels.json"))
                    continue
                label = ids[key]
                templates_seen.setdefault(label, str(template))
                if remap is not None:
                    if label not in remap:
                        continue  # outside the chosen subset
                    label = remap[label]
            elif remap is not None and split != "test":
                continue
            if not path.is_file():
                problems.append((str(path), "video file is missing"))
                continue
            ph = e.get("placeholders") or []
            records.append(ClipRecord(cid, path, label, str(template) if template is not None else None,
                                      tuple(str(p) for p in ph) if isinstance(ph, list) else (), split))
    if not found_split:
        raise DatasetError("no train.json, validation.json or test.json next to labels.json", root)
    if remap is None:  # show templates with their brackets where the split files give them
        classes = [templates_seen.get(i, c) for i, c in enumerate(classes)]
    ds = VideoDataset(root, "ssv2", classes, records, problems)
    _attach_annotations(ds)
    return ds


# ---------------------------------------------------------------- v1 / Jester (CSV + frames)

def _read_csv(path: Path, min_cols: int) -> list[list[str]]:
    if not path.is_file():
        raise DatasetError("file not found", path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DatasetError("not a text file (expected ';'-separated CSV)", path) from None
    rows = [r for r in csv.reader(text.splitlines(), delimiter=";") if r and any(c.strip() for c in r)]
    for i, r in enumerate(rows):
        if len(r) < min_cols:
            raise DatasetError(f"line {i + 1} has {len(r)} field(s), expected {min_cols} separated by ';'", path)
    return rows


def read_csv_frames(root: str | Path, subset: list[str] | None = None) -> VideoDataset:
    root = Path(root).resolve()
    label_files = sorted(root.glob("*-labels.csv"))
    if not label_files:
        raise DatasetError("no '*-labels.csv' file (Something-Something v1 / Jester layout)", root)
    lf = label_files[0]
    prefix = lf.name[: -len("-labels.csv")]
    fmt = "jester" if "jester" in prefix else "ssv1"
    classes = [r[0].strip() for r in _read_csv(lf, 1)]
    ids = {c: i for i, c in enumerate(classes)}
    remap = None
    if subset is not None:
        remap = {}
        for j, t in enumerate(subset):
            if t not in ids:
                raise DatasetError(f"subset class {t!r} is not in {lf.name}", lf)
            remap[ids[t]] = j
        classes = list(subset)
    frame_root = next((d for d in (root / f"20bn-{prefix}", root / prefix, root / "frames", root) if d.is_dir()
                       and any(x.is_dir() for x in d.iterdir())), root)
    records, problems = [], []
    for split in SPLITS:
        sp = root / f"{prefix}-{split}.csv"
        if not sp.exists():
            continue
        for row in _read_csv(sp, 1):
            try:
                cid = check_id(row[0].strip(), sp)
                folder = safe_child(frame_root, cid)
            except UnsafePathError as err:
                problems.append((sp.name, str(err)))
                continue
            label = None
            template = row[1].strip() if len(row) > 1 else None
            if template:
                if template not in ids:
                    problems.append((f"{sp.name} id {cid}", f"class {template!r} is not in {lf.name}"))
                    continue
                label = ids[template]
                if remap is not None:
                    if label not in remap:
                        continue
                    label = remap[label]
            if not folder.is_dir() or not any(p.suffix.lower() in FRAME_EXTENSIONS for p in folder.iterdir()):
                problems.append((str(folder), "frame folder is missing or empty"))
                continue
            records.append(ClipRecord(cid, folder, label, template or None, (), split))
    ds = VideoDataset(root, fmt, classes, records, problems)
    _attach_annotations(ds)
    return ds


# ---------------------------------------------------------------- plain folder

def read_folder(root: str | Path) -> VideoDataset:
    root = Path(root).resolve()
    if not root.is_dir():
        raise DatasetError("not a folder", root)
    records = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith("."):
            rel = p.relative_to(root).with_suffix("").as_posix()
            records.append(ClipRecord(rel, p, None, None, (), "all"))
    return VideoDataset(root, "folder", [], records, [])


# ---------------------------------------------------------------- annotations

def _attach_annotations(ds: VideoDataset) -> None:
    ann = ds.root / "annotations"
    ds.box_files = sorted(ann.glob("bounding_box*.json")) if ann.is_dir() else []
    wf = ann / "action_windows.json"
    if wf.is_file():
        try:
            data = read_json(wf)
            ds.windows.update({str(k): (int(v[0]), int(v[1])) for k, v in data.items()})
        except (VidvizError, TypeError, ValueError, IndexError, AttributeError) as err:
            ds.problems.append((str(wf), f"malformed action windows: {err}"))


def parse_something_else(data, source: str | Path) -> dict[str, list[list[Box]]]:
    """Something-Else boxes: ``{id: [{name: 'id/0001.jpg', labels: [{box2d, category, gt_annotation}]}]}``."""
    if not isinstance(data, dict):
        raise DatasetError("expected an object mapping video ids to per-frame records", source)
    out: dict[str, list[list[Box]]] = {}
    for vid, frames in data.items():
        if not isinstance(frames, list):
            raise DatasetError(f"video {vid!r}: expected a list of frames", source)
        per_frame: list[list[Box]] = []
        for fr in frames:
            boxes = []
            for lab in (fr.get("labels") or []) if isinstance(fr, dict) else []:
                try:
                    b = lab["box2d"]
                    xyxy = (float(b["x1"]), float(b["y1"]), float(b["x2"]), float(b["y2"]))
                except (KeyError, TypeError, ValueError):
                    raise DatasetError(f"video {vid!r}: a label without a valid box2d", source) from None
                gt = str(lab.get("gt_annotation", lab.get("category", "")))
                if gt.startswith("object"):
                    role, idx = "object", int(gt.split()[-1]) if gt.split()[-1].isdigit() else 0
                elif "hand" in gt.lower():
                    role, idx = "hand", 0
                else:
                    role, idx = gt.split()[0] if gt else "other", 0
                boxes.append(Box(role, str(lab.get("category", "")), xyxy, idx))
            per_frame.append(boxes)
        out[str(vid)] = per_frame
    return out


# ---------------------------------------------------------------- entry point

def detect_format(root: str | Path) -> str:
    root = Path(root)
    if (root / "labels.json").is_file():
        return "ssv2"
    if any(root.glob("*-labels.csv")):
        return "csv"
    return "folder"


def open_dataset(root: str | Path, subset: str | Path | list[str] | None = None) -> VideoDataset:
    """Open a dataset in any supported layout (detected from its files)."""
    root = Path(root)
    if not root.exists():
        raise DatasetError("dataset folder not found", root)
    if not root.is_dir():
        raise DatasetError("not a folder", root)
    sub = read_subset(subset) if isinstance(subset, (str, Path)) else subset
    fmt = detect_format(root)
    if fmt == "ssv2":
        return read_ssv2(root, sub)
    if fmt == "csv":
        return read_csv_frames(root, sub)
    return read_folder(root)


def boxes_for_clip(ds: VideoDataset, clip_id: str, indices: np.ndarray) -> list[list[Box]] | None:
    """Boxes of the sampled source frames ``indices`` (or None when the clip has none)."""
    per = ds.boxes.get(str(clip_id))
    if not per:
        return None
    return [per[min(int(i), len(per) - 1)] for i in indices]
