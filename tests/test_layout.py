"""The house rules, read off the source: one-way layers, no import cycle, pages that never import the CLI,
a library that never imports streamlit, and a README that names every module."""

from __future__ import annotations

import ast
from pathlib import Path

from support import ROOT

#: data -> models -> explain -> backend/jobs -> tables/render/player -> cli: a module imports only its own layer or
#: lower ones.
LAYERS = [
    ("vidviz.errors", 0), ("vidviz.config", 0), ("vidviz.runtime", 0),
    ("vidviz.data", 1), ("vidviz.models", 2), ("vidviz.explain", 3),
    ("vidviz.backend", 4), ("vidviz.jobs", 4), ("vidviz.tables", 5), ("vidviz.render", 5), ("vidviz.player", 5),
    ("vidviz.cli", 6),
]


def layer_of(module: str) -> int:
    for prefix, rank in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return rank
    if module == "vidviz":
        return 0
    raise AssertionError(f"{module} belongs to no layer; add it to LAYERS and to the README's layout")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module named by an import anywhere in the file (function-local imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def library_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / "vidviz").rglob("*.py"))}


def internal_graph() -> dict[str, set[str]]:
    mods = library_modules()
    return {m: {i for i in imports_of(p) if i in mods and i != m} for m, p in mods.items()}


def test_layers_point_one_way():
    bad = [f"{m} (layer {layer_of(m)}) imports {i} (layer {layer_of(i)})"
           for m, deps in internal_graph().items() for i in deps if layer_of(i) > layer_of(m)]
    assert not bad, bad


def test_no_import_cycle():
    graph = internal_graph()
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for d in graph[m]:
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(d):], d]))
            if d not in state:
                visit(d, [*stack, d])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_the_cycle_check_finds_a_cycle(monkeypatch):
    """The check above is live: a graph with a cycle fails it."""
    import pytest

    monkeypatch.setattr(__import__(__name__), "internal_graph", lambda: {"a": {"b"}, "b": {"a"}})
    with pytest.raises(AssertionError, match="import cycle"):
        test_no_import_cycle()


def test_the_library_never_imports_streamlit_and_pages_never_import_the_cli():
    for m, p in library_modules().items():
        assert not any(i == "streamlit" or i.startswith("streamlit.") for i in imports_of(p)), m
    ui = [ROOT / "app.py", ROOT / "ui.py", ROOT / "serve.py", *sorted((ROOT / "pages").glob("*.py"))]
    for p in ui:
        assert not any(i == "vidviz.cli" or i.startswith("vidviz.cli.") for i in imports_of(p)), p.name
        assert not any(i.startswith("benchmarks") or i == "bench" for i in imports_of(p)), p.name
    for m, p in library_modules().items():  # benchmarks stay out of the library's import graph
        assert not any(i.startswith("benchmarks") or i == "bench" for i in imports_of(p)), m
    assert not list((ROOT / "pages").glob("_*.py")), "shared UI code belongs outside pages/ (it would show as a page)"


def test_pages_build_no_figure_and_compute_nothing():
    """Pages lay out widgets and call vidviz: no plotly, numpy maths, OpenCV or torch of their own."""
    for p in sorted((ROOT / "pages").glob("*.py")):
        mods = imports_of(p)
        for banned in ("plotly", "cv2", "torch", "vidviz.explain.cam.upsample", "vidviz.explain.cam.normalise",
                       "vidviz.data.video.load_clip"):
            assert not any(i == banned or i.startswith(banned + ".") for i in mods), f"{p.name} imports {banned}"


def test_the_readme_layout_names_every_module():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    missing = [str(p.relative_to(ROOT)) for p in library_modules().values()
               if p.name != "__init__.py" and str(p.relative_to(ROOT)) not in layout and p.name not in layout]
    assert not missing, f"README's layout leaves out {missing}"
