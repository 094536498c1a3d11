"""Files: a failed atomic write leaves the old file whole and no temporary file behind; a script run outside the
checkout writes nothing where it runs."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bliss_utils._io import atomic_path, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.mark.slow
def test_a_script_outside_the_checkout_finds_it_and_writes_nothing_where_it_runs(tmp_path: Path) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"abc")
    script = (
        "from bliss_utils import config; from bliss_utils._filehash import file_sha256, memo_path; "
        f"print(config.find_project_root()); print(file_sha256({str(weights)!r})); print(memo_path())"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("BLISS_ROOT", "BLISS_DATA_DIR")}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root, sha, memo = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert Path(root) == ROOT and sha == hashlib.sha256(b"abc").hexdigest()
    assert Path(memo).parent == ROOT / "data" and list(elsewhere.iterdir()) == []
    # with a data folder that does not exist, the hash is not remembered and no folder is made for it
    env["BLISS_DATA_DIR"] = str(tmp_path / "no-data")
    subprocess.run([sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, check=True)
    assert not (tmp_path / "no-data").exists()
