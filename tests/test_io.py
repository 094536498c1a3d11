"""Atomic writes: a failed write leaves the old file whole and no temporary file behind."""

from __future__ import annotations

import pytest

from bliss_utils._io import atomic_path, atomic_write_text


def test_failed_write_keeps_the_old_file(tmp_path):
    target = atomic_write_text(tmp_path / "sub" / "table.md", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.md"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.md"]
