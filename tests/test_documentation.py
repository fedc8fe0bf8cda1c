"""The README and the documentation site, read as their users read them: the README's code runs as written,
the command line lists every job, the site builds, and no page, card, config or comment speaks of how the
project was developed instead of what it does."""

import ast
import importlib
import inspect
import io
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

from cancer_models.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
JOBS = {"predict", "slides", "train", "evaluate", "compare", "recipes", "sources", "calibrate", "export", "push"}
# Words about the development process rather than the product (this file, which lists them, is not scanned).
PROCESS_WORDS = re.compile(r"\b(sessions?|issues?|rounds?|lent|development machines?)\b", re.IGNORECASE)


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.DOTALL)


def test_the_readme_is_short_and_starts_with_what_a_newcomer_needs():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[:5] == ["## Quick start", "## Predict", "## The app", "## Train on your own images", "## Evaluate"]
    assert "pip install -r requirements-dev.txt -e . && python app.py" in text and "python -m pytest -q" in text
    assert "not a medical device" in text


def test_every_python_block_of_the_readme_runs_as_written(tmp_path):
    blocks = python_blocks(README)
    assert blocks
    script = tmp_path / "readme_blocks.py"
    script.write_text("\n\n".join(blocks))
    result = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "malignant" in result.stdout


def test_the_command_line_lists_every_job():
    parser = build_parser()
    help_text = parser.format_help()
    for job in JOBS:
        assert job in help_text, job
    for job in JOBS:  # and each job has its own help
        with pytest.raises(SystemExit) as stop:
            parser.parse_args([job, "--help"])
        assert stop.value.code == 0


def _prose_of_python(path: Path) -> list[tuple[int, str]]:
    """Comments and docstrings of a Python file: the prose in it (code identifiers are not prose)."""
    text = path.read_text()
    found = [(t.start[0], t.string) for t in tokenize.generate_tokens(io.StringIO(text).readline)
             if t.type == tokenize.COMMENT]  # fmt: skip
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                found.append((getattr(node, "lineno", 1), doc))
    return found


def _files_that_describe_the_product() -> list[Path]:
    patterns = ["*.md", "*.py", "*.toml", "*.yml", "app_models.json", "docs/**/*", "benchmarks/**/*",
                "model_cards/**/*", "models/**/*", "cancer_models/**/*.py", "scripts/*", "tests/*.py"]  # fmt: skip
    text_suffixes = {".md", ".py", ".json", ".toml", ".yml", ".sh", ".csv", ""}
    files = {p for pattern in patterns for p in ROOT.glob(pattern) if p.is_file() and p.suffix in text_suffixes}
    return sorted(files - {Path(__file__).resolve()})


def test_no_file_speaks_of_the_development_process():
    found = []
    for path in _files_that_describe_the_product():
        chunks = _prose_of_python(path) if path.suffix == ".py" else [(1, path.read_text())]
        for line, chunk in chunks:
            for match in PROCESS_WORDS.finditer(chunk):
                context = chunk[max(0, match.start() - 40) : match.end() + 40].replace("\n", " ")
                found.append(f"{path.relative_to(ROOT)}:{line}: ...{context}...")
    assert found == []


def test_the_documentation_pages_in_the_navigation_exist():
    nav = re.findall(r":\s*([\w-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.MULTILINE)
    assert len(nav) >= 10
    for page in nav:
        assert (ROOT / "docs" / page).is_file(), page


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mkdocs") is None, reason="needs mkdocs (requirements-dev.txt)")
def test_the_documentation_site_builds_without_warnings(tmp_path):
    result = subprocess.run(
        ["mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "Predictor" in api and "load_pretrained" in api  # the API pages come from the docstrings


def test_the_readmes_train_and_evaluate_commands_run_as_written_on_a_train_only_folder(tmp_path, monkeypatch, capsys):
    """A newcomer's folder of benign/ and malignant/ images under train/ only: train as the README says, then
    evaluate as it says: the test split training held out is recreated and scored, not the training images."""
    import json
    import shlex

    from conftest import fixture_images

    from cancer_models.cli import main

    commands = [line for line in README.read_text().splitlines() if line.startswith("cancer-models ")]
    train = next(c for c in commands if c.startswith("cancer-models train --data my_images"))
    evaluate = next(c for c in commands if c.startswith("cancer-models evaluate --model runs/mine --data my_images"))
    for split in ("train", "validation", "test"):
        for image in fixture_images("histopathology", split):
            (tmp_path / "my_images" / "train" / image.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(image, tmp_path / "my_images" / "train" / image.parent.name / image.name)
    monkeypatch.chdir(tmp_path)
    assert main(shlex.split(train)[1:]) == 0
    trained = json.loads((tmp_path / "runs" / "mine" / "metrics.json").read_text())["test"]
    capsys.readouterr()
    assert main(shlex.split(evaluate)[1:]) == 0
    scored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scored["n"] == trained["n"] < 24 and not scored["includes_training_images"]
    assert scored["confusion_matrix"] == trained["confusion_matrix"]  # the same held-out images
    assert (tmp_path / "report" / "report.md").is_file()


def _api_objects() -> list[tuple[str, object]]:
    """Every function, class and public method the API pages show (``::: name`` in docs/api.md)."""
    found = []
    for name in re.findall(r"^::: (\S+)", (ROOT / "docs" / "api.md").read_text(), re.MULTILINE):
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            for attribute in parts[i:]:
                obj = getattr(obj, attribute)
            break
        found.append((name, obj))
        if inspect.isclass(obj):
            methods = [(k, v) for k, v in vars(obj).items() if inspect.isfunction(v) and not k.startswith("_")]
            found += [(f"{name}.{k}", v) for k, v in methods]
    return found


def test_every_function_the_api_pages_show_says_what_it_takes_and_returns():
    missing = []
    for name, obj in _api_objects():
        doc = inspect.getdoc(obj) or ""
        if not doc:
            missing.append(f"{name}: no docstring")
        if not inspect.isfunction(obj):
            continue
        signature = inspect.signature(obj)
        takes = [p for p in signature.parameters if p not in ("self", "cls")]
        if takes and "Args:" not in doc:
            missing.append(f"{name}: no Args section")
        returns = signature.return_annotation not in (None, "None", inspect.Signature.empty)
        if takes and returns and "Returns:" not in doc:
            missing.append(f"{name}: no Returns section")
    assert missing == []
