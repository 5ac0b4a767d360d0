"""stacks/ by capability, held from the source: each package's `__init__.py` maps every module beside it and
imports nothing (config/ re-exports its own model), the CDK-free modules import without the CDK, and the packages
import each other only downwards through LAYERS, so `common/` imports no capability and no two capabilities import
each other."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

STACKS = PROJECT_ROOT / "stacks"
# Lowest first: a package may import its own modules and those of the packages before it, never one after it.
LAYERS = ("common", "config", "storage", "review", "monitoring", "serving", "labelling", "training_pipeline")
# What tools, the serving venv, the labelling job and the local kit import without aws-cdk installed or started
CDK_FREE = (
    "stacks.config",
    "stacks.common.constants",
    "stacks.common.lmi_image",
    "stacks.common.training_image",
    "stacks.serving.serving_properties",
    "stacks.storage.labels_table",
    "stacks.review.history_table",
)


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stacks_imports(root: Path = STACKS) -> dict[str, set[str]]:
    """Module -> the stacks.* modules it imports anywhere in its body (TYPE_CHECKING blocks included)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "stacks":
                # `from stacks.x import y` may name a module y: count both, the package rule holds either way
                targets |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names if alias.name.split(".")[0] == "stacks"}
        graph[module_name(path, root)] = targets
    return graph


def layer(module: str) -> str | None:
    """The package of a stacks module; None for the composition root (photo_labeller_stack) and stacks itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else None


def layering_problems(graph: Mapping[str, set[str]]) -> list[str]:
    problems = []
    for module, targets in sorted(graph.items()):
        source = layer(module)
        if source is None:
            continue  # the composition root imports everything
        for target in sorted(targets):
            destination = layer(target)
            if destination is None and target != "stacks":
                problems.append(f"{module} imports {target}: the composition root")
            elif destination is not None and LAYERS.index(destination) > LAYERS.index(source):
                problems.append(f"{module} imports {target}: {source}/ sits below {destination}/")
    return problems


def unmapped(package: Path) -> list[str]:
    """The modules and folders beside a package's __init__.py that its docstring does not name."""
    docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8"))) or ""
    names = [p.name for p in package.iterdir() if p.suffix == ".py" and p.name != "__init__.py"]
    names += [f"{p.name}/" for p in package.iterdir() if p.is_dir() and p.name != "__pycache__"]
    names += [p.name for p in package.iterdir() if p.suffix == ".jsonata"]
    return sorted(name for name in names if name not in docstring)


def init_imports(package: Path) -> list[str]:
    """What a package's __init__.py imports, `from __future__` aside."""
    tree = ast.parse((package / "__init__.py").read_text(encoding="utf-8"))
    found = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            found.append(node.module or ".")
    return found


def packages() -> list[Path]:
    return sorted(p.parent for p in STACKS.rglob("__init__.py"))


def test_capabilities_import_each_other_only_downwards() -> None:
    graph = stacks_imports()
    assert {layer(m) for m in graph} - {None} == set(LAYERS), "a package is missing from LAYERS, or gone"
    assert layering_problems(graph) == []


def test_an_upward_import_is_named() -> None:
    # Negative control: a building block that reads the config, and serving reaching up into labelling
    graph = {
        "stacks.common.nag": {"stacks.config.app_config", "stacks.common.constants"},
        "stacks.serving.rollout": {"stacks.labelling.window", "stacks.monitoring.alarm_topic"},
        "stacks.labelling.window": {"stacks.photo_labeller_stack"},
        "stacks.photo_labeller_stack": {"stacks.training_pipeline.pipeline"},
    }
    assert layering_problems(graph) == [
        "stacks.common.nag imports stacks.config.app_config: common/ sits below config/",
        "stacks.labelling.window imports stacks.photo_labeller_stack: the composition root",
        "stacks.serving.rollout imports stacks.labelling.window: serving/ sits below labelling/",
    ]


def test_every_package_init_maps_its_modules_and_imports_nothing() -> None:
    for package in packages():
        assert unmapped(package) == [], f"{package.relative_to(PROJECT_ROOT)}/__init__.py does not map them"
        imports = init_imports(package)
        if package == STACKS / "config":  # the model's public names, from its own modules only
            assert imports and all(name.startswith("stacks.config.") for name in imports), imports
        else:
            assert imports == [], f"{package.relative_to(PROJECT_ROOT)}/__init__.py imports {imports}"


def test_a_module_left_out_of_the_map_is_named(tmp_path: Path) -> None:
    # Negative control of the map check
    (tmp_path / "__init__.py").write_text('"""The package.\n\n    mapped.py  what it holds\n"""\n')
    for name in ("mapped.py", "forgotten.py"):
        (tmp_path / name).write_text("")
    (tmp_path / "data").mkdir()
    assert unmapped(tmp_path) == ["data/", "forgotten.py"]


def test_the_cdk_free_modules_import_without_the_cdk() -> None:
    # A fresh interpreter, as a tool, the serving venv or the local kit starts: none of these may start jsii
    code = f"import sys\nfor m in {CDK_FREE!r}: __import__(m)\nprint(sorted(m for m in sys.modules if 'cdk' in m))"
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
