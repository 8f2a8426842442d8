"""The fault suite: kill -9 at several points of precompute and quality, a full disk, a read-only folder.

Each interrupted job is run again with the same command: it must end complete and bit-identical to an
uninterrupted run, or refuse with a one-line message. The jobs run as the user runs them (``vidviz`` in a
new process); a small harness around the same entry point sends SIGKILL to its own process at a chosen write.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, random_model, run_cli

from vidviz.models import save_checkpoint

pytestmark = pytest.mark.slow

# Runs `vidviz ARGS...` in this process, killed (SIGKILL, no clean-up) at the write named by VV_KILL_AT:
#   "<file name>:before"  the process dies just before writing that file
#   "<file name>:during"  it dies with half of the bytes in the temporary file beside it (as a real kill would)
#   "score:<n>"           quality dies as it starts scoring its n-th clip
HARNESS = r'''
import os, signal, sys, tempfile
from pathlib import Path
import vidviz.data.io as vio
import vidviz.jobs.quality as quality
import vidviz.jobs.store as store

where, what = os.environ["VV_KILL_AT"].rsplit(":", 1)

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def wrap(real, as_bytes):
    def write(path, data, *a, **k):
        if Path(path).name == where:
            if what == "during":
                raw = data if as_bytes else repr(data).encode()
                fd, _ = tempfile.mkstemp(prefix=f".{Path(path).name}.", suffix=".tmp", dir=Path(path).parent)
                os.write(fd, raw[: len(raw) // 2])
            die()
        return real(path, data, *a, **k)
    return write

for mod in (store, quality, vio):
    if hasattr(mod, "atomic_write_bytes"):
        mod.atomic_write_bytes = wrap(vio.atomic_write_bytes, True) if mod is not vio else mod.atomic_write_bytes
    if hasattr(mod, "atomic_write_json"):
        mod.atomic_write_json = wrap(vio.atomic_write_json, False) if mod is not vio else mod.atomic_write_json
if where == "score":
    real_score, calls = quality.score_clip, [0]
    def score(*a, **k):
        calls[0] += 1
        if calls[0] == int(what):
            die()
        return real_score(*a, **k)
    quality.score_clip = score

from vidviz.cli import main
sys.exit(main(sys.argv[1:]))
'''


@pytest.fixture(scope="module")
def job(tiny_ds, tmp_path_factory):
    """A checkpoint for the tiny dataset and the harness script."""
    d = tmp_path_factory.mktemp("faults")
    ck = save_checkpoint(d / "m.pt", random_model(4))
    harness = d / "harness.py"
    harness.write_text(HARNESS)
    return {"ds": tiny_ds, "ck": ck, "harness": harness}


def killed(job, at: str, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, str(job["harness"]), *args], capture_output=True, text=True, timeout=600,
                       cwd=ROOT, env={**os.environ, "VV_KILL_AT": at})
    assert r.returncode == -signal.SIGKILL, (at, r.returncode, r.stderr[-2000:])
    return r


def precompute_args(job, out: Path) -> list[str]:
    return ["precompute", "--data", str(job["ds"]), "--checkpoint", str(job["ck"]), "--split", "train",
            "--part-size", "12", "--workers", "0", "--out", str(out)]


STORE_FILES = ("predictions.parquet", "maps.npy", "map_classes.npy", "curves.npy", "logits.npy")


def same_store(a: Path, b: Path) -> None:
    for name in STORE_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ma, mb = (json.loads((p / "meta.json").read_text()) for p in (a, b))
    ma.pop("created"), mb.pop("created")
    assert ma == mb and ma["complete"] is True
    leftovers = [p.name for p in b.rglob(".*") if p.is_file()]
    assert leftovers == [], leftovers  # no temporary file of the killed run is left behind


def uninterrupted(tmp_path_factory, args) -> Path:
    """The folder an uninterrupted run of ``args(folder)`` wrote: what every interrupted run must end as."""
    out = tmp_path_factory.mktemp("reference") / "out"
    r = run_cli(*args(out))
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def reference(job, tmp_path_factory):
    return uninterrupted(tmp_path_factory, lambda out: precompute_args(job, out))


@pytest.mark.parametrize("at", [
    "part-00001.json:before",  # between parts: part 0 and part 1's arrays are written, part 1 is not marked done
    "part-00002.npz:during",  # inside a part: its arrays half written
    "map_classes.npy:before",  # during the merge: the table and the maps are written, the rest is not
    "meta.json:during",  # the last write of the merge
])
def test_precompute_killed_then_rerun_ends_identical(job, reference, tmp_path, at):
    out = tmp_path / "store"
    killed(job, at, *precompute_args(job, out))
    assert not (out / "meta.json").is_file() or not json.loads((out / "meta.json").read_text()).get("complete")
    r = run_cli(*precompute_args(job, out))
    assert r.returncode == 0, r.stderr
    same_store(reference, out)


def quality_args(job, out: Path) -> list[str]:
    return ["quality", "--data", str(job["ds"]), "--checkpoint", str(job["ck"]), "--split", "train",
            "--max-clips", "5", "--sanity-clips", "1", "--methods", "gradcam", "--out", str(out)]


QUALITY_FILES = ("quality.csv", "quality_clips.csv", "quality_sanity.csv", "quality_failures.csv")


@pytest.fixture(scope="module")
def quality_reference(job, tmp_path_factory):
    return uninterrupted(tmp_path_factory, lambda out: quality_args(job, out))


@pytest.mark.parametrize("at", ["score:4", "quality.csv:during", "quality_sanity.csv:before"])
def test_quality_killed_then_rerun_ends_identical(job, quality_reference, tmp_path, at):
    out = tmp_path / "q"
    killed(job, at, *quality_args(job, out))
    if at.startswith("score"):  # three clips were scored; a fourth line was being written when it died
        lines = (out / "quality_clips.jsonl").read_text()
        (out / "quality_clips.jsonl").write_text(lines + lines.splitlines()[-1][:40])
    r = run_cli(*quality_args(job, out))
    assert r.returncode == 0, r.stderr
    for name in QUALITY_FILES:
        assert without_times(out / name) == without_times(quality_reference / name), name
    assert [p.name for p in out.glob(".*")] == []


def without_times(path: Path) -> str:
    """A quality CSV's text without the measured seconds per clip (the one thing a rerun cannot repeat)."""
    import pandas as pd

    df = pd.read_csv(path)
    if "seconds" in df.columns:
        df = df.drop(columns="seconds")
    if "metric" in df.columns:
        df = df[df["metric"] != "seconds"]
    return df.to_csv(index=False)


# ---------------------------------------------------------------- a full disk and a read-only folder

def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


@pytest.fixture()
def small_disk(tmp_path):
    """A folder on a 256 KiB file system (a tmpfs where this user may mount one; else a per-process file-size cap)."""
    where = tmp_path / "disk"
    if os.geteuid() == 0 and _mount_tmpfs(where, "256k"):
        yield where, None
        subprocess.run(["umount", str(where)], check=False)
    else:
        where.mkdir()
        yield where, 256 * 1024  # RLIMIT_FSIZE: a write past it fails (EFBIG) as a full disk does (ENOSPC)


def test_a_full_disk_is_one_line_and_the_rerun_with_space_ends_identical(job, reference, small_disk):
    where, cap = small_disk
    out = where / "store"
    args = precompute_args(job, out)
    if cap is None:
        r = run_cli(*args)
    else:
        code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
                f"resource.setrlimit(resource.RLIMIT_FSIZE, ({cap}, {cap})); "
                "from vidviz.cli import main; sys.exit(main(sys.argv[1:]))")
        r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 2, r.stderr[-2000:]
    err = [line for line in r.stderr.splitlines() if line.startswith("vidviz: error")]
    assert len(err) == 1 and ("No space left on device" in err[0] or "File too large" in err[0]) and str(out) in err[0]
    assert "Traceback" not in r.stderr
    if cap is None:  # space is freed
        subprocess.run(["mount", "-o", "remount,size=64m", str(where)], check=True)
        r = run_cli(*args)
    else:
        r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    same_store(reference, out)


@pytest.fixture()
def read_only(tmp_path):
    """A folder this process cannot write to (a read-only tmpfs for root, who ignores permission bits)."""
    where = tmp_path / "ro"
    if os.geteuid() == 0:
        if not _mount_tmpfs(where, "1m"):
            pytest.fail("running as root without the right to mount a file system: run the tests as a user")
        (where / "store").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        yield where / "store"
        subprocess.run(["umount", str(where)], check=False)
    else:
        where.mkdir()
        (where / "store").mkdir()
        where.joinpath("store").chmod(0o555)
        yield where / "store"
        where.joinpath("store").chmod(0o755)


def test_a_read_only_folder_is_one_line(job, read_only):
    for args in (precompute_args(job, read_only), quality_args(job, read_only)):
        r = run_cli(*args)
        assert r.returncode == 2, r.stderr[-2000:]
        err = [line for line in r.stderr.splitlines() if line.startswith("vidviz: error")]
        assert len(err) == 1 and ("Read-only file system" in err[0] or "Permission denied" in err[0]), r.stderr
        assert str(read_only) in err[0] and "Traceback" not in r.stderr
    shutil.rmtree(read_only, ignore_errors=True)  # (nothing there to remove: it could not be written)
