"""The contract between the sandbox and moto's internals: every internal a bridge relies on is
still there, in the shape it was written against — and a missing or reshaped one is named."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from infra.sandbox import moto_bridges
from infra.sandbox.moto_bridges import CONTRACT, MotoChanged, check
from infra.settings import ROOT


def test_every_internal_the_bridges_rely_on_is_still_there() -> None:
    check()  # raises MotoChanged, naming each internal that moved


def test_a_moved_or_reshaped_internal_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    changed: list[tuple[str, str, Any]] = [
        ("moto.sqs.models", "SQSBackend.send_message_gone", callable),
        ("moto.sts.models", "STSBackend.assume_role", lambda f: False),
        ("moto.no_such_module", "X", callable),
    ]
    monkeypatch.setattr(moto_bridges, "CONTRACT", [*CONTRACT, *changed])
    with pytest.raises(MotoChanged) as raised:
        check()
    said = str(raised.value)
    assert "moto.sqs.models.SQSBackend.send_message_gone is gone" in said
    assert "moto.sts.models.STSBackend.assume_role changed shape" in said
    assert "moto.no_such_module.X is gone" in said


def test_only_the_bridges_module_patches_moto() -> None:
    """No other sandbox module assigns to a moto class (one seam to check on an upgrade)."""
    for path in sorted((ROOT / "infra" / "sandbox").glob("*.py")):
        if path.name == "moto_bridges.py":
            continue
        tree = ast.parse(Path(path).read_text())
        moto_names = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("moto")
            for alias in node.names
        }
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                    assert target.value.id not in moto_names, f"{path.name} patches moto"
