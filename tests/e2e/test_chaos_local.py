"""The short chaos run (``make chaos`` runs the full one): make local with 10% of every AWS
call failing (throttled or 5xx, seed 1), the short mixed workload through the berth client —
sessions, commands in several projects, jobs on both runners, instances — and the auditor's
invariants on what the emulator holds afterwards: none may be broken."""

from __future__ import annotations

import pytest

from infra.sandbox import chaos
from infra.sandbox.audit import INVARIANTS, report
from infra.sandbox.chaos import SHORT, run_against
from tests.e2e.conftest import Sandbox

pytestmark = pytest.mark.e2e

FAULTS = "all=0.1,seed=1"
SANDBOX_ENV = {**chaos.SANDBOX_ENV, "BERTH_LOCAL_FAULTS": FAULTS}


def test_the_short_workload_under_ten_percent_faults_keeps_every_promise(
    sandbox: Sandbox,
) -> None:
    assert sandbox.launched is not None
    outcome = run_against(sandbox.launched, FAULTS, SHORT)
    print(outcome.table())
    assert outcome.problems == []
    assert report(outcome.violations) == ""
    assert list(outcome.violations) == list(INVARIANTS)  # every invariant was checked
    assert sum(outcome.injected.values()) >= 20  # the run did meet faults...
    assert outcome.aws_retries >= 20  # ...and botocore retried through them
    assert len(outcome.history.commands) == SHORT.commands
    assert len(outcome.history.sessions) == SHORT.sessions
