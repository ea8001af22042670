"""Shared pieces of the reliability tests (issue #12): the database as text (to show a failed command
changed nothing), the workspace's health check, and the real CLI in a child process."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
PROMPT = "portrait of a girl with red hair, blue eyes, green outfit, white background, looking calm"


def dump(workspace: Path) -> str:
    """Every row of the workspace database as SQL text (identical dumps: nothing changed)."""
    with sqlite3.connect(workspace / "charforge.db") as conn:
        return "\n".join(conn.iterdump())


def health(workspace: Path) -> list[str]:
    """Problems of a workspace: integrity_check not ok, rows pointing at missing or partial files,
    identity blobs not matching their sha256, leftover temp files. Empty when healthy."""
    problems = []
    conn = sqlite3.connect(workspace / "charforge.db")
    try:
        if (result := conn.execute("PRAGMA integrity_check").fetchone()[0]) != "ok":
            problems.append(f"integrity_check: {result}")
        if broken := conn.execute("PRAGMA foreign_key_check").fetchall():
            problems.append(f"dangling references: {broken}")
        for path, sha in conn.execute("SELECT path, sha256 FROM assets"):
            file = workspace / path
            if not file.is_file():
                problems.append(f"asset row points at missing {path}")
            elif hashlib.sha256(file.read_bytes()).hexdigest() != sha:
                problems.append(f"asset row points at partial or changed {path}")
        for blob, sha in conn.execute("SELECT data, sha256 FROM identity_artifacts"):
            if hashlib.sha256(blob).hexdigest() != sha:
                problems.append("identity blob does not match its sha256")
    finally:
        conn.close()
    problems += [f"leftover temp file {p}" for p in workspace.rglob("*.tmp")]
    return problems


def charforge_process(*args: object, pause_at: str | None = None, marker: Path | None = None) -> subprocess.Popen:
    """The real `charforge` entry point in a child process (optionally pausing at a named point)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CHARFORGE_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env.pop("CHARFORGE_PAUSE_AT", None)
    if pause_at is not None:
        env.update(CHARFORGE_PAUSE_AT=pause_at, CHARFORGE_PAUSE_FILE=str(marker))
    code = "import sys; from charforge.cli.main import main; sys.argv = ['charforge', *sys.argv[1:]]; main()"
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def wait_for(marker: Path, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    """Until the child reached its pause point (fails if it ended first)."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the child ended (code {proc.returncode}) before pausing: {out}{err}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the child never reached its pause point")
        time.sleep(0.05)
