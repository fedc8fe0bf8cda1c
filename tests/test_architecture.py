"""The package's shape: modules import one way only, and no import hides inside a function to dodge a cycle."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cancer_models"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """The cancer_models modules a ``from ... import ...`` statement loads."""
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if not target.startswith("cancer_models"):
        return []
    names = [f"{target}.{alias.name}" for alias in node.names]
    return [n for n in names if n in MODULES] or [target]


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, top_level: bool) -> list[tuple[str, int]]:
    """(imported cancer_models module, line) for imports at module level, or inside functions."""
    module, tree = _module_name(path), ast.parse(path.read_text())
    found, stack = [], [(tree, False)]
    while stack:
        node, in_function = stack.pop()
        if _is_type_checking_block(node):
            continue  # never executed
        if isinstance(node, (ast.Import, ast.ImportFrom)) and in_function != top_level:
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("cancer_models")]
            else:
                targets = _resolve(module, path.name == "__init__.py", node)
            found += [(t, node.lineno) for t in targets]
        inside = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        stack += [(child, inside) for child in ast.iter_child_nodes(node)]
    return found


FILES = sorted(PACKAGE.rglob("*.py"))
MODULES = {_module_name(p) for p in FILES}


def test_the_import_graph_has_no_cycle():
    graph = {_module_name(p): {m for m, _ in _imports(p, top_level=True)} for p in FILES}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(graph.get(module, ())):
            assert state.get(dep) != "open", "import cycle: " + " -> ".join([*path, module, dep])
            if dep not in state:
                visit(dep, [*path, module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert graph["cancer_models.config"] == {"cancer_models.errors", "cancer_models.record", "cancer_models.settings"}


# The flow, lowest first: each subpackage imports only from those before it and from the core modules at the
# top level, without exceptions. The models layer saves and loads weights and configs; trust fits and scores the
# checks on a model's features; inference answers (and loads a folder with its detector); reporting writes what a
# model folder says about itself (its card, written with the detector by ``save_model_folder``).
LAYERS = ["data", "models", "trust", "inference", "reporting", "evaluation", "calibration", "training", "cli"]
# The package's __init__ loads its names on first use (importlib, so that `import cancer_models` needs no torch).
CORE = {"errors", "config", "record", "settings", "sources", "version"}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_subpackages_import_only_from_earlier_stages_of_the_flow():
    wrong = []
    for path in FILES:
        module, stage = _module_name(path), _stage(_module_name(path))
        for imported, line in _imports(path, top_level=True):
            target = _stage(imported)
            if stage is None and target is not None and module.split(".")[-1] in CORE:
                wrong.append(f"{module}:{line}: a core module imports {imported}")
            elif stage and target and LAYERS.index(target) > LAYERS.index(stage):
                wrong.append(f"{module}:{line} imports {imported}, a later stage than {stage}")
    assert wrong == []


def test_every_module_belongs_to_a_stage_or_the_core():
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert top == CORE
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} == set(LAYERS)


def test_no_function_imports_another_module_of_the_package():
    """Except a subcommand's ``run``: the command line is the last stage, which nothing imports (so a late
    import there hides no cycle), and its help must come up without loading torch."""
    late = [
        f"{p.relative_to(PACKAGE.parent)}:{line} imports {m}"
        for p in FILES
        if _stage(_module_name(p)) != "cli"
        for m, line in _imports(p, False)
    ]
    assert late == []


def test_the_command_lines_help_loads_no_heavy_library():
    import subprocess
    import sys

    code = (
        "import sys, contextlib, io\n"
        "from cancer_models.cli import main\n"
        "from cancer_models.cli.main import COMMANDS\n"
        "for argv in [['--help']] + [[name, '--help'] for name in COMMANDS]:\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        main(argv)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'datasets', 'sklearn', 'scipy', 'gradio'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_helps_written_out_names_are_the_librarys():
    from cancer_models import list_models
    from cancer_models.calibration.fitting import DEFAULT_ACCEPTANCE
    from cancer_models.cli.main import build_parser
    from cancer_models.data.augment import AUGMENTATIONS
    from cancer_models.inference.slides import MIN_TISSUE
    from cancer_models.training.config import ARCHITECTURES, AUGMENTATION_PRESETS

    assert list(ARCHITECTURES) == list_models() and list(AUGMENTATION_PRESETS) == list(AUGMENTATIONS)
    helps = {name: sub.format_help() for name, sub in build_parser()._subparsers._group_actions[0].choices.items()}
    assert f"(default: {MIN_TISSUE})" in helps["slides"] and f"(default: {DEFAULT_ACCEPTANCE})" in helps["calibrate"]


def test_the_library_knows_nothing_of_the_app():
    # It may read the photographs gradio ships (calibration/negatives.py), never import it.
    for path in FILES:
        text = path.read_text()
        assert "app_models.json" not in text and "import gradio" not in text and "from gradio" not in text, path


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """A function's lines without its docstring (Args and Returns sections are documentation, not code to read)."""
    first = node.body[0]
    is_docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    docstring = first.end_lineno - first.lineno + 1 if is_docstring else 0
    return node.end_lineno - node.lineno + 1 - docstring


def test_every_function_is_short_enough_to_read_at_once():
    ROOT = PACKAGE.parent
    files = [*FILES, *(ROOT / name for name in ("app.py", "catalog.py", "train.py", "push_to_hub.py"))]
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({_code_lines(node)} lines)"
        for path in files
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _code_lines(node) > 60
    ]
    assert long == []


def test_the_package_exports_what_it_loads_on_first_use():
    import cancer_models

    assert set(cancer_models.__all__) == set(cancer_models._EXPORTS) | {"__version__"}
    assert all(getattr(cancer_models, name) is not None for name in cancer_models.__all__)
