"""Run every benchmark one after the other (about 6-8 minutes on 2 CPUs) and rewrite docs/bench/*.md.

Run on a quiet machine: the figures are only as good as the CPU they had to themselves.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHES = (
    ("broker", ["-m", "bench.broker_bench", "--write", str(ROOT / "docs" / "bench" / "broker.md")]),
    ("sd", ["-m", "bench.sd_bench", "--output", str(ROOT / "docs" / "bench" / "sd.md")]),
    ("gateway", ["-m", "bench.gateway_bench", "--seconds", "12", "--out", str(ROOT / "docs" / "bench" / "gateway.md")]),
    ("gateway-faults", ["-m", "bench.gateway_faults_bench", "--out", str(ROOT / "docs" / "bench" / "gateway-faults.md")]),
)


def main() -> int:
    failed = []
    for name, argv in BENCHES:
        print(f"== {name} benchmark", flush=True)
        if subprocess.run([sys.executable, *argv], cwd=ROOT).returncode != 0:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    print("figures written to docs/bench/; update the summary in docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
