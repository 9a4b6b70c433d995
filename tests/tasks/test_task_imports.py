"""The tasks promise the agent's workspace the standard library, numpy and torch, nothing else.

Every task file is read for the imports it runs when loaded (module level, try blocks
included); anything else a file needs (Pillow to decode an archive) must be imported where
the work happens, which only preparing does. Then each task's prepare.py is really imported
and used with Pillow made unimportable, as in a workspace without it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TASKS = Path(__file__).resolve().parents[2] / "tasks"
TASK_FILES = sorted([*TASKS.glob("t*/*.py"), *TASKS.glob("_kit/*.py")])
PROMISED = set(sys.stdlib_module_names) | {"numpy", "torch", "taskkit", "prepare", "__future__"}


def load_time_imports(tree: ast.Module) -> set[str]:
    """Top-level packages imported when the module is loaded (not inside a def or class)."""
    found: set[str] = set()
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            todo.extend(ast.iter_child_nodes(node))
    return found


def test_the_check_sees_imports_in_try_blocks_and_not_in_functions() -> None:
    tree = ast.parse("try:\n    import PIL.Image\nexcept ImportError:\n    pass\ndef f():\n    import scipy\n")
    assert load_time_imports(tree) == {"PIL"}


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_task_file_loads_with_stdlib_numpy_and_torch_only(path: Path) -> None:
    extra = load_time_imports(ast.parse(path.read_text())) - PROMISED
    assert not extra, f"{path.name} imports {sorted(extra)} when loaded; import it where it is used"


@pytest.mark.parametrize("task", ["t2_tinyimagenet_cnn", "t3_voc_segmentation"])
def test_image_task_works_in_a_workspace_without_pillow(task: str, tmp_path: Path) -> None:
    """prepare.py imported as train.py imports it, and its evaluation helpers used."""
    code = textwrap.dedent(f"""
        import sys
        sys.modules["PIL"] = None  # `import PIL` now raises ImportError, as without Pillow
        sys.path[:0] = [{str(TASKS / task)!r}, {str(TASKS / "_kit")!r}]
        import numpy as np, torch
        import prepare
        x = prepare.normalize(torch.zeros((2, 8, 8, 3), dtype=torch.uint8))
        assert x.shape == (2, 3, 8, 8), x.shape
        print("ok", "PIL" in sys.modules and sys.modules["PIL"] is not None)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["ok", "False"]
