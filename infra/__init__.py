"""berth's CDK app.

The Lambda code in ``functions/`` is imported as top-level packages (``sessions``, ``shared``,
...), exactly as Lambda imports it from the asset. infra/ reads the environment contract of
each function (``SessionsConfig.environment(...)``) from there, so it puts that directory on
the import path once, here.
"""

import sys
from pathlib import Path

_FUNCTIONS = str(Path(__file__).resolve().parent.parent / "functions")
if _FUNCTIONS not in sys.path:
    sys.path.append(_FUNCTIONS)
