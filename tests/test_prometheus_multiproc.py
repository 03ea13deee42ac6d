"""The multiprocess directory's bookkeeping: dead pids, a restart on a used directory, recycled pids, the host.

prometheus_client picks its multiprocess mode when first imported, so each case runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from c2casgiutils import _metrics_multiproc, config
from tests.servers import free_port

ROOT = Path(__file__).parent.parent


def _env(directory: Path | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("C2C__") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env["PYTHONPATH"] = str(ROOT)
    if directory is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    env.update(extra)
    return env


def _run(code: str, directory: Path | None, **extra: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=_env(directory, **extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


# A worker of an earlier run: requests in progress, a failed health check, counters; then SIGKILLed.
EARLIER_WORKER = """
    import os, sys, time
    import c2casgiutils
    from c2casgiutils import prometheus
    from c2casgiutils._health import metrics
    from prometheus_client import Counter, Gauge
    prometheus._prepare_worker(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    Gauge("http_requests_inprogress", "In progress", multiprocess_mode="livesum").inc(4)
    metrics.record("Flag", True, 0.1)
    Counter("http_requests", "Requests").inc(7)
    print(os.getpid(), flush=True)
    time.sleep(60)
"""


def _killed_earlier_worker(directory: Path) -> int:
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(EARLIER_WORKER)],
        env=_env(directory, C2C__PROMETHEUS__PORT=""),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    pid = int(process.stdout.readline())
    os.kill(pid, signal.SIGKILL)
    process.wait(10)
    process.stdout.close()
    return pid


def _samples(text: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def test_restart_on_a_used_directory_exposes_no_gauge_of_the_earlier_run(tmp_path: Path) -> None:
    directory = tmp_path / "multiproc"
    directory.mkdir()
    dead = _killed_earlier_worker(directory)
    assert (directory / f"gauge_livesum_{dead}.db").exists()
    assert (directory / f"gauge_livemostrecent_{dead}.db").exists()

    port = free_port()
    result = _run(
        f"""
        import logging, os, urllib.request
        logging.basicConfig(level=logging.WARNING)
        import c2casgiutils
        from c2casgiutils import prometheus
        server = prometheus.start_metrics_server()
        print(sorted(os.listdir(os.environ["PROMETHEUS_MULTIPROC_DIR"])))
        print(urllib.request.urlopen("http://127.0.0.1:{port}/metrics", timeout=10).read().decode())
        prometheus._prepare_worker(os.environ["PROMETHEUS_MULTIPROC_DIR"])  # nothing dead left: no new warning
        prometheus.stop_metrics_server()
        """,
        directory,
        C2C__PROMETHEUS__PORT=str(port),
        C2C__PROMETHEUS__HOST="127.0.0.1",
    )
    files, exposition = result.stdout.split("\n", 1)
    samples = _samples(exposition)
    # The earlier run's gauges are gone from the files and from the exposition; its counter stays.
    assert f"gauge_livesum_{dead}.db" not in files
    assert f"gauge_livemostrecent_{dead}.db" not in files
    assert f"counter_{dead}.db" in files
    assert "http_requests_inprogress" not in exposition
    assert "c2casgiutils_health_checks_failure" not in exposition
    assert samples["http_requests_total{}"] == 7
    # Process metrics of the live worker (this one), labelled by pid; none of the dead one.
    assert {key for key in samples if key.startswith("process_resident_memory_bytes")} == {
        f"process_resident_memory_bytes{{pid={_pid_in(files)}}}"
    }
    assert result.stderr.count("has files of 1 dead processes") == 1, result.stderr


def _pid_in(files: str) -> int:
    markers = [name for name in json.loads(files.replace("'", '"')) if name.startswith("c2c-worker-")]
    assert len(markers) == 1, markers
    return int(markers[0].removeprefix("c2c-worker-").removesuffix(".pid"))


def test_gauges_of_a_worker_killed_while_serving_disappear_before_the_next_collection(tmp_path: Path) -> None:
    directory = tmp_path / "multiproc"
    directory.mkdir()
    result = _run(
        """
        import os, signal, subprocess, sys, textwrap
        import c2casgiutils
        from c2casgiutils import prometheus
        from prometheus_client import Gauge, generate_latest
        inprogress = Gauge("http_requests_inprogress", "In progress", multiprocess_mode="livesum")
        inprogress.inc(1)
        registry = prometheus.build_registry()
        worker = subprocess.Popen([sys.executable, "-c", textwrap.dedent(os.environ["WORKER"])],
                                  stdout=subprocess.PIPE, text=True)
        pid = int(worker.stdout.readline())
        print(generate_latest(registry).decode().count(f'pid="{pid}"'))
        print([line for line in generate_latest(registry).decode().splitlines()
               if line.startswith("http_requests_inprogress ")])
        os.kill(pid, signal.SIGKILL)
        worker.wait()
        print([line for line in generate_latest(registry).decode().splitlines()
               if line.startswith("http_requests_inprogress ")])
        print(generate_latest(registry).decode().count(f'pid="{pid}"'))
        """,
        directory,
        C2C__PROMETHEUS__PORT="",
        WORKER=EARLIER_WORKER,
    )
    with_worker, before, after, after_pids = result.stdout.splitlines()
    assert int(with_worker) >= 6  # its process_* series, labelled by its pid
    assert before == "['http_requests_inprogress 5.0']"
    assert after == "['http_requests_inprogress 1.0']"
    assert after_pids == "0"


def test_gauge_file_of_a_recycled_pid_is_dropped_before_use(tmp_path: Path) -> None:
    directory = tmp_path / "multiproc"
    directory.mkdir()
    # An earlier run's worker had the pid this interpreter gets: its file says 4 requests in progress.
    result = _run(
        """
        import os, shutil
        from prometheus_client.mmap_dict import MmapedDict, mmap_key
        path = os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], f"gauge_livesum_{os.getpid()}.db")
        stale = MmapedDict(path)
        stale.write_value(mmap_key("http_requests_inprogress", "http_requests_inprogress", (), (), "x"), 4.0, 0)
        stale.close()
        import c2casgiutils  # sets up the multiprocess mode, before any value of this process exists
        from c2casgiutils import prometheus
        from prometheus_client import Gauge, generate_latest
        Gauge("http_requests_inprogress", "In progress", multiprocess_mode="livesum").inc(1)
        # A file this process maps is its own: kept.
        from c2casgiutils import _metrics_multiproc
        print(_metrics_multiproc.drop_recycled_pid_gauges(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
        print([line for line in generate_latest(prometheus.build_registry()).decode().splitlines()
               if line.startswith("http_requests_inprogress ")])
        """,
        directory,
        C2C__PROMETHEUS__PORT="",
    )
    assert result.stdout.splitlines() == ["[]", "['http_requests_inprogress 1.0']"]


def test_health_failure_gauge_is_the_most_recent_result_of_live_workers(tmp_path: Path) -> None:
    directory = tmp_path / "multiproc"
    directory.mkdir()
    result = _run(
        """
        import os, subprocess, sys
        import c2casgiutils
        from c2casgiutils import prometheus
        from c2casgiutils._health import metrics
        from prometheus_client import generate_latest
        registry = prometheus.build_registry()
        def failure():
            return [line for line in generate_latest(registry).decode().splitlines()
                    if line.startswith("c2casgiutils_health_checks_failure{")]
        code = "from c2casgiutils._health import metrics; import sys; metrics.record('Flag', sys.argv[1] == '1', 0.1)"
        subprocess.run([sys.executable, "-c", code, "1"], check=True)   # another worker failed, then exited
        print(failure())
        metrics.record("Flag", False, 0.1)
        subprocess.run([sys.executable, "-c", code, "0"], check=True)
        metrics.record("Flag", True, 0.1)                                   # this worker fails last
        print(failure())
        """,
        directory,
        C2C__PROMETHEUS__PORT="",
    )
    # The failure of a worker that has exited is not reported; the latest live result is.
    assert result.stdout.splitlines() == ["[]", "['c2casgiutils_health_checks_failure{name=\"Flag\"} 1.0']"]


def test_metrics_server_binds_the_host_setting(tmp_path: Path) -> None:
    port = free_port()
    _run(
        f"""
        import socket, urllib.request
        from c2casgiutils import prometheus
        prometheus.start_metrics_server()
        assert urllib.request.urlopen("http://127.0.0.1:{port}/metrics", timeout=10).status == 200
        other = socket.socket()
        other.bind(("127.0.0.2", {port}))   # the port is free on other addresses: bound to 127.0.0.1 only
        other.close()
        prometheus.stop_metrics_server()
        """,
        None,
        C2C__PROMETHEUS__PORT=str(port),
        C2C__PROMETHEUS__HOST="127.0.0.1",
    )


def test_host_setting_default_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("C2C__PROMETHEUS__HOST", raising=False)
    assert config.Settings().prometheus.host == "0.0.0.0"  # noqa: S104
    monkeypatch.setenv("C2C__PROMETHEUS__HOST", "127.0.0.1")
    assert config.Settings().prometheus.host == "127.0.0.1"


def test_pid_alive_tells_a_reaped_or_zombie_process_from_a_running_one() -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert _metrics_multiproc.pid_alive(process.pid)
        process.kill()
        # Not reaped yet: a zombie, which counts as dead.
        for _ in range(100):
            if not _metrics_multiproc.pid_alive(process.pid):
                break
            time.sleep(0.05)
        assert Path(f"/proc/{process.pid}").exists()  # still there, as a zombie
        assert not _metrics_multiproc.pid_alive(process.pid)
    finally:
        process.wait(10)
    assert not _metrics_multiproc.pid_alive(process.pid)
    assert _metrics_multiproc.pid_alive(os.getpid())


def test_file_pids_reads_every_kind_of_file(tmp_path: Path) -> None:
    for name in (
        "counter_11.db",
        "gauge_livesum_12.db",
        "gauge_all_13.db",
        "histogram_14.db",
        "c2c-worker-15.pid",
        "notes.txt",
    ):
        (tmp_path / name).touch()
    assert _metrics_multiproc.file_pids(str(tmp_path)) == {11, 12, 13, 14, 15}
