"""berth's CDK app.

The Lambda code in ``functions/`` is imported as top-level packages (``sessions``, ``shared``,
...), exactly as Lambda imports it from the asset. infra/ reads the environment contract of
each function (``SessionsConfig.environment(...)``) from there, and the jobs image's own
catalogue and environment names from ``containers/jobs``, so it puts both directories on the
import path once, here.
"""

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
# the functions' packages, and the jobs image's (its catalogue and environment names)
for _path in (_ROOT / "functions", _ROOT / "containers" / "jobs"):
    if str(_path) not in sys.path:
        sys.path.append(str(_path))
