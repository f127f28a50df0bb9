"""Imports only point down: description <- hdl <- flows <- CLI; and the
package stays in pieces a reader can hold (files, hardware functions).

Every module of the package is read with :mod:`ast` (nothing is imported) and
given a layer:

0. **description**: the network description and its plain numbers
   (``gen/errors, output, fixedpoint, tables, interleaver, schedule, config, names,
   legality, geometry, datasets, protocol, pixel_code``);
1. **hdl**: the hardware (``hdl/*``);
2. **flows**: what turns a description into results (``gen/flow, tools,
   targets, synth, estimate, explore, sweep``, ``sim/*``, ``boards/*``: every
   other ``gen`` module);
3. **cli**: the command line (``gen/cli.py``, ``gen/cli_*.py``).

The checks: no module imports one of a higher layer; the imports (module level
and inside functions) have no cycle; an import of the package inside a
function (deferring a heavy or optional dependency, e.g. so that ``check``
does not load Amaranth) carries a comment on its line saying so.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gen", "hdl", "sim", "boards")
LAYER_NAMES = ("description", "hdl", "flows", "cli")
DESCRIPTION = {"errors", "output", "fixedpoint", "tables", "interleaver", "schedule", "config",
               "names", "legality",
               "geometry", "datasets", "protocol", "pixel_code"}


def layer_of(module):
    """Layer number of ``module`` (``"gen.config"``, ``"hdl.network"``, ...)."""
    pkg, _, name = module.partition(".")
    if pkg == "hdl":
        return 1
    if pkg in ("sim", "boards"):
        return 2
    if pkg == "gen":
        if name in DESCRIPTION or name == "":
            return 0
        if name == "cli" or name.startswith("cli_"):
            return 3
        return 2
    raise ValueError(f"{module}: not a module of the package")


def _module_name(path, root):
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module, is_package, node):
    """Absolute in-package names an ``import``/``from`` node refers to, or []
    for imports from outside the package."""
    if isinstance(node, ast.Import):
        out = []
        for a in node.names:
            parts = a.name.split(".")
            if parts[0] == "sparse_edge" and len(parts) > 1:
                out.append(".".join(parts[1:]))
        return out
    if node.level == 0:
        parts = (node.module or "").split(".")
        if parts[0] != "sparse_edge":
            return []
        base = parts[1:]
    else:
        here = module.split(".")
        if not is_package:
            here = here[:-1]
        if node.level - 1 > len(here):
            return []
        base = here[:len(here) - (node.level - 1)] + (node.module.split(".") if node.module
                                                      else [])
    if not base:            # ``from .. import gen`` names subpackages
        return [a.name for a in node.names]
    if len(base) == 1:      # ``from .. import hdl`` / ``from ..gen import config``
        return [f"{base[0]}.{a.name}" for a in node.names]
    return [".".join(base)]


def read_imports(root=ROOT, packages=PACKAGES):
    """``{module: [(imported module, line, in a function, comment), ...]}`` of
    every module of ``packages`` below ``root``."""
    out = {}
    files = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            files[_module_name(path, root)] = path
    for module, path in files.items():
        text = path.read_text()
        lines = text.splitlines()
        tree = ast.parse(text, str(path))
        is_package = path.name == "__init__.py"
        found = []

        def visit(node, in_function):
            for child in ast.iter_child_nodes(node):
                func = in_function or isinstance(child, (ast.FunctionDef,
                                                         ast.AsyncFunctionDef, ast.Lambda))
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    line = lines[child.lineno - 1]
                    comment = line.split("#", 1)[1].strip() if "#" in line else ""
                    for target in _resolve(module, is_package, child):
                        # ``from .geometry import bits``: the module, not the name
                        if target not in files and target.rsplit(".", 1)[0] in files:
                            target = target.rsplit(".", 1)[0]
                        found.append((target, child.lineno, in_function, comment))
                visit(child, func)

        visit(tree, False)
        out[module] = found
    return out


def problems(imports, layer=layer_of):
    """Every violation of the layering in an import map (see :func:`read_imports`)."""
    out = []
    for module, found in sorted(imports.items()):
        for target, line, in_function, comment in found:
            if target not in imports:
                continue        # a subpackage itself (``sparse_edge.gen``): no code
            if layer(target) > layer(module):
                out.append(f"{module}:{line} imports {target}: upward, from the "
                           f"{LAYER_NAMES[layer(module)]} layer to the "
                           f"{LAYER_NAMES[layer(target)]} layer")
            if in_function and not comment:
                out.append(f"{module}:{line} imports {target} inside a function without a "
                           f"comment on its line saying which dependency it defers")
    out += [f"import cycle: {' -> '.join(c)}" for c in cycles(imports)]
    return out


def cycles(imports):
    """The import cycles of the package (each as a closed path), module-level
    and function-level imports alike."""
    graph = {m: sorted({t for t, *_ in found if t in imports and t != m})
             for m, found in imports.items()}
    out, state, stack = [], {}, []

    def dfs(m):
        state[m] = 1
        stack.append(m)
        for t in graph[m]:
            if state.get(t) == 1:
                out.append(stack[stack.index(t):] + [t])
            elif t not in state:
                dfs(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            dfs(m)
    return out


# -- the package ------------------------------------------------------------------------------

def test_every_module_has_a_layer():
    for module in read_imports():
        assert layer_of(module) in range(4), module


def test_the_package_is_layered():
    found = problems(read_imports())
    assert not found, "\n".join(found)


def test_description_layer_needs_neither_amaranth_nor_numba():
    """``sparse-edge check`` imports only the description layer, the estimate
    and the golden model: none of them may import Amaranth or numba at module
    level."""
    for pkg in ("gen",):
        for path in sorted((ROOT / pkg).glob("*.py")):
            module = _module_name(path, ROOT)
            if layer_of(module) != 0 and module not in ("gen.estimate", "gen.targets",
                                                        "gen.tools"):
                continue
            tree = ast.parse(path.read_text())
            for node in tree.body:
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                for n in names:
                    assert n.split(".")[0] not in ("amaranth", "numba"), \
                        f"{module} imports {n} at module level"


# -- the checker catches what it must --------------------------------------------------------

def _write(root, files):
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_a_planted_upward_import_is_caught(tmp_path):
    """A copy of the real package with one upward import added (the
    description layer importing the hardware) fails the check, naming it."""
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            dest = tmp_path / path.relative_to(ROOT)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(path.read_text())
    assert problems(read_imports(tmp_path)) == []
    geo = tmp_path / "gen" / "geometry.py"
    geo.write_text(geo.read_text() + "\nfrom ..hdl.network import Network\n")
    found = problems(read_imports(tmp_path))
    assert any(p.startswith("gen.geometry:") and "imports hdl.network: upward, from the "
               "description layer to the hdl layer" in p for p in found), found
    # and the cycle it closes (hdl.network imports gen.geometry)
    assert any(p.startswith("import cycle:") and "gen.geometry" in p for p in found), found


@pytest.mark.parametrize("files, expect", [
    # hdl importing a flow
    ({"hdl/a.py": "from ..gen.synth import synthesize\n", "gen/synth.py": ""},
     ["hdl.a:1 imports gen.synth: upward"]),
    # a flow importing the CLI, absolute form
    ({"sim/a.py": "import sparse_edge.gen.cli\n", "gen/cli.py": ""},
     ["sim.a:1 imports gen.cli: upward"]),
    # a function-level import without a comment, and one with
    ({"gen/cli.py": "def f():\n    from .synth import x\n\n\ndef g():\n"
                    "    from .flow import y  # deferred: Amaranth\n",
      "gen/synth.py": "", "gen/flow.py": ""},
     ["gen.cli:2 imports gen.synth inside a function without a comment"]),
    # a cycle inside one layer, hidden behind a function-level import
    ({"gen/synth.py": "from .estimate import e\n",
      "gen/estimate.py": "def f():\n    from .synth import s  # deferred\n"},
     ["import cycle: gen.estimate -> gen.synth -> gen.estimate"]),
    # ``from .. import gen, hdl`` in a flow reaches hdl (allowed) and gen (allowed)
    ({"gen/synth.py": "from .. import gen, hdl\n", "hdl/__init__.py": "",
      "gen/__init__.py": ""}, []),
])
def test_checker_on_synthetic_packages(tmp_path, files, expect):
    _write(tmp_path, files)
    found = problems(read_imports(tmp_path))
    assert len(found) == len(expect), found
    for want, got in zip(expect, found):
        assert got.startswith(want), (want, got)


# -- sizes ---------------------------------------------------------------------------------------

MAX_FILE_LINES = 500
MAX_HDL_FUNCTION_LINES = 80


def test_no_module_over_500_lines():
    long = [f"{p.relative_to(ROOT)}: {n} lines" for pkg in PACKAGES
            for p in sorted((ROOT / pkg).rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES]
    assert not long, "split these by topic:\n" + "\n".join(long)


def test_no_hdl_function_over_80_lines():
    long = []
    for p in sorted((ROOT / "hdl").rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_HDL_FUNCTION_LINES:
                    long.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert not long, "\n".join(long)
