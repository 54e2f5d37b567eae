"""Synth time of berth's app against an empty ``cdk.App().synth()``, measured in one run.

Usage: ``.venv/bin/python bench/synth_time.py [rounds]`` (default 5). Both are whole
processes (Python start, jsii/node start, synth), so the ratio says what berth's constructs,
cdk-nag and the template checks add on top of the CDK's own fixed cost.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from bench.common import paired, report, time_process  # noqa: E402
from infra.settings import project_context  # noqa: E402

EMPTY_APP = "import aws_cdk; aws_cdk.App().synth()"


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as out:
        berth_env = dict(env, CDK_OUTDIR=out, CDK_CONTEXT_JSON=json.dumps(project_context()))
        a, b = paired(
            lambda: time_process([sys.executable, str(ROOT / "app.py")], berth_env),
            lambda: time_process([sys.executable, "-c", EMPTY_APP], env),
            rounds,
        )
    print(report("python app.py (berth synth)", a, "empty cdk.App().synth()", b))


if __name__ == "__main__":
    main()
