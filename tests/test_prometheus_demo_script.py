"""``scripts/demo`` with several workers: metrics bound to 127.0.0.1, its multiprocess directory removed on exit.

The script runs from a copy of the repository's layout whose ``.venv`` links to the real uvicorn (its ``python``
is a stand-in that skips the ``pip install`` step, which needs the network, and runs the rest in the real one).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port, wait_port, wait_port_closed

ROOT = Path(__file__).parent.parent


def _layout(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "scripts" / "demo").write_bytes((ROOT / "scripts" / "demo").read_bytes())
    (repo / "examples").symlink_to(ROOT / "examples")
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "uvicorn").symlink_to(ROOT / ".venv" / "bin" / "uvicorn")
    stand_in = bin_dir / "python"
    # 'python -m pip install' needs the network: skipped; anything else runs in the real interpreter.
    real = ROOT / ".venv" / "bin" / "python"
    stand_in.write_text(f'#!/bin/sh\n[ "$1 $2" = "-m pip" ] && exit 0\nexec "{real}" "$@"\n')
    stand_in.chmod(0o755)
    return repo


def _metrics_dirs(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("c2casgiutils-metrics-*"))


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_demo_script_removes_its_metrics_directory_on_exit(tmp_path: Path, stop: signal.Signals) -> None:
    repo = _layout(tmp_path)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("C2C__") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        {
            "TMPDIR": str(tmp),
            "DEMO_WORKERS": "2",
            "DEMO_PORT": str(port),
            "C2C__PROMETHEUS__PORT": str(metrics_port),
            "DEMO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'demo.sqlite3'}",
        }
    )
    log = tmp_path / "demo.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["bash", str(repo / "scripts" / "demo")], env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_port(port, timeout=60)
        wait_port(metrics_port, timeout=30)
        [directory] = _metrics_dirs(tmp)
        assert any(directory.iterdir())
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).status_code == 200
        # Bound like the app, to 127.0.0.1 only.
        with pytest.raises(OSError), socket.create_connection(("127.0.0.2", metrics_port), timeout=2):
            pass
        process.send_signal(stop)
        assert process.wait(30) in (0, 128 + stop, -stop), log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    wait_port_closed(port, timeout=10)
    assert _metrics_dirs(tmp) == [], log.read_text()
