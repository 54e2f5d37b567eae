"""The worker syncs a workspace down as root: it must never write through a link that a
process of the workspace's user swapped in while the download ran."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from berth_worker.sync import WorkspaceSync, open_beneath


class SwappingS3:
    """A bucket of three files under ``sub/``; while the first downloads, ``swap`` runs (as a
    racing process of the user would)."""

    def __init__(self, swap: Any) -> None:
        self.swap = swap
        self.keys = ["sub/a.txt", "sub/b.txt", "sub/deep/c.txt"]

    def get_paginator(self, _: str) -> Any:
        keys = self.keys

        class Pages:
            def paginate(self, **_: Any) -> list[dict[str, Any]]:
                return [
                    {
                        "Contents": [
                            {"Key": f"workspaces/p/{key}", "ETag": f'"{key}"', "Size": 1}
                            for key in keys
                        ]
                    }
                ]

        return Pages()

    def download_fileobj(self, bucket: str, key: str, handle: BinaryIO) -> None:
        handle.write(b"planted-by-the-bucket\n")
        if key.endswith("a.txt") and self.swap is not None:
            self.swap()
            self.swap = None


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    target = tmp_path / "root-only"
    target.mkdir(mode=0o700)
    return target


def test_a_directory_swapped_for_a_link_mid_download_is_refused(
    tmp_path: Path, outside: Path
) -> None:
    root, state = tmp_path / "workspaces", tmp_path / "state"
    root.mkdir()
    state.mkdir()
    sub = root / "p" / "sub"

    def swap() -> None:
        os.rename(sub, root / "p" / "moved")
        os.symlink(outside, sub)

    report = WorkspaceSync(SwappingS3(swap), "b", root, state).down("p")
    assert list(outside.iterdir()) == []  # nothing written through the link
    assert report.fetched == 1
    assert any("b.txt" in warning for warning in report.warnings)
    assert any("c.txt" in warning for warning in report.warnings)


def test_a_file_swapped_for_a_link_is_replaced_not_written_through(
    tmp_path: Path, outside: Path
) -> None:
    victim = outside / "victim"
    victim.write_text("root's\n")
    (tmp_path / "w").mkdir()
    os.symlink(victim, tmp_path / "w" / "f")
    with open_beneath(tmp_path / "w", ["f"]) as handle:
        handle.write(b"new\n")
    assert victim.read_text() == "root's\n"
    assert (tmp_path / "w" / "f").read_text() == "new\n"
    assert not (tmp_path / "w" / "f").is_symlink()


def test_a_link_in_the_middle_of_a_path_is_refused(tmp_path: Path, outside: Path) -> None:
    (tmp_path / "w").mkdir()
    os.symlink(outside, tmp_path / "w" / "d")
    with pytest.raises(NotADirectoryError), open_beneath(tmp_path / "w", ["d", "f"]):
        pass
    assert list(outside.iterdir()) == []
