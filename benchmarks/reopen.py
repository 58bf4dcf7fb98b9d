"""Reopening a connection with a long history: `uplink-console bench reopen` (ui/bench_reopen.py),
runnable from a checkout as

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/reopen.py [--rows 1000000] [--history FILE]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ui.bench_reopen import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
