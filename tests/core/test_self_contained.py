"""The project stands on its own: no code or document points outside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = re.compile(r"(\.\./shared|/work/shared|\bshared/(aiven-api|cf-api|DESIGN|style)\.md)")


def test_nothing_points_outside_the_repository() -> None:
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True, check=True).stdout.split()
    checked = [name for name in listed if name.endswith((".py", ".md", ".yml", ".toml", ".js", ".html", ".txt"))]
    assert len(checked) > 100
    offenders = [name for name in checked
                 if (ROOT / name).is_file() and name != "tests/core/test_self_contained.py"
                 and OUTSIDE.search((ROOT / name).read_text(errors="replace"))]
    assert offenders == []
