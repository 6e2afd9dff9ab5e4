"""An air-gapped push: `make vendor` fetches wheels once; the upload then installs and runs
with no package index at all, from exactly what .cfignore lets through."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _uploaded_files(tmp: Path) -> list[str]:
    """The files cf push would upload: tracked or untracked, minus what .cfignore leaves out."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True, check=True).stdout.split()
    files = [f for f in listed if (ROOT / f).is_file()]
    subprocess.run(["git", "init", "-q", str(tmp / "matcher")], check=True)
    (tmp / "matcher" / ".gitignore").write_text((ROOT / ".cfignore").read_text())
    ignored = set(subprocess.run(["git", "-C", str(tmp / "matcher"), "check-ignore", "--no-index", "--stdin"],
                                 input="\n".join(files), capture_output=True, text=True).stdout.split())
    return [f for f in files if f not in ignored]


def test_vendored_push_installs_and_runs_without_an_index(tmp_path: Path) -> None:
    app = tmp_path / "app"
    for name in _uploaded_files(tmp_path):
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, app / name)
    assert not (app / "tests").exists() and not (app / ".venv").exists()
    subprocess.run(["make", "-s", "-C", str(ROOT), "vendor", f"VENDOR={app / 'vendor'}", f"PYTHON={sys.executable}"],
                   check=True, capture_output=True, timeout=600)
    assert any((app / "vendor").glob("psycopg_binary-*.whl"))

    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PIP_CONFIG_FILE": os.devnull}
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True, timeout=120)
    python = str(tmp_path / "venv" / "bin" / "python")
    # what the buildpack does with a vendor/ directory: no index, only these wheels
    install = subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", "--find-links", "vendor",
                              "-r", "requirements.txt"], cwd=app, env=env, capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]

    run_env = {**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'tm.sqlite3'}"}
    upgrade = subprocess.run([python, "-m", "tenant_metrics", "db", "upgrade"], cwd=app, env=run_env,
                             capture_output=True, text=True, timeout=120)
    assert upgrade.returncode == 0, upgrade.stderr
    factories = subprocess.run(
        [python, "-c", "import broker.app, gateway.app, sd.app, broker.gunicorn_conf, gateway.gunicorn_conf"],
        cwd=app, env=run_env, capture_output=True, text=True, timeout=120)
    assert factories.returncode == 0, factories.stderr
