"""Python code run in a fresh interpreter of this venv: what importing a module costs can only be
seen where nothing was imported before (unit/test_model_options.py, graph/test_node_options.py).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


def assert_import_without_torch(modules: list[str]) -> None:
    completed = run_python(
        f"""
        import importlib, sys
        for name in {modules!r}:
            importlib.import_module(name)
        print(sorted(m for m in ("torch", "transformers") if m in sys.modules))
        """
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]", f"imported at import time: {completed.stdout}"
