"""Tuning across machines on a real PostgreSQL server: ``mstrain tune --storage postgresql://``.

The module makes a PostgreSQL cluster with ``initdb`` in a temporary folder and runs its server
on a free port of 127.0.0.1 (as an unprivileged user when the tests run as root: PostgreSQL
refuses to run as root), with a password, and stops and removes it at the end. Each "machine" is
a ``python -m trainer.tune`` process with its own ``--output-dir`` and cache and, for the cases
where it matters, a host name of its own (a UTS namespace made with ``unshare``): the tool's
liveness check then cannot tell that the other machine's process runs here, and leaves its dead
trials to the heartbeat, as on two real machines.

Trials are short (the logistic regression of tests/tune/test_study.py on generated digits);
the heartbeat's grace period is its minimum, 10 s, so a machine waits at most 6 s for the server.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest

from tests.conftest import write_yaml
from tests.tune.test_study import COMMON, rows, staged, tune_cmd, tune_env

pytestmark = pytest.mark.e2e
psycopg = pytest.importorskip("psycopg", reason="the tune extra's PostgreSQL driver (psycopg) "
                              "is not installed")

USER = "mstrain"
# Distinctive, so that any leak into output or files is found by a plain search.
PASSWORD = "pg-Secret-7731"
DATABASE = "studies"
GRACE = 10  # --heartbeat-grace: heartbeats every 2 s, a machine waits 6 s for the server


# ------------------------------------------------------------------------------ the server
def _bin_dir() -> Path | None:
    """The folder of PostgreSQL's programs: on the PATH, else Debian's newest."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).parent
    folders = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")
               if (Path(p) / "initdb").is_file() and (Path(p) / "postgres").is_file()]
    folders.sort(key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.name.split(".")])
    return folders[-1] if folders else None


def _account() -> pwd.struct_passwd | None:
    """The unprivileged user the server runs as when the tests run as root."""
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


def _die_with_test() -> None:
    """In the server's process: a test process that dies (even by SIGKILL) takes it along."""
    import ctypes

    ctypes.CDLL(None).prctl(1, int(signal.SIGQUIT))  # PR_SET_PDEATHSIG: immediate shutdown


class Server:
    """A PostgreSQL server of its own, on 127.0.0.1."""

    def __init__(self, bin_dir: Path, folder: Path, account: pwd.struct_passwd | None) -> None:
        self.bin_dir, self.folder, self.account = bin_dir, folder, account
        self.data = folder / "data"
        self.log = folder / "server.log"
        self.proc: subprocess.Popen | None = None
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]

    def _as_owner(self) -> dict:
        if self.account is None:
            return {}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}

    def init(self) -> None:
        if self.account is not None:
            os.chown(self.folder, self.account.pw_uid, self.account.pw_gid)
        secret = self.folder / "password"
        secret.write_text(PASSWORD + "\n")
        if self.account is not None:
            os.chown(secret, self.account.pw_uid, self.account.pw_gid)
        secret.chmod(0o600)
        made = subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", USER,
             f"--pwfile={secret}", "--auth=scram-sha-256", "--no-sync", "--locale=C",
             "--encoding=UTF8"], cwd=self.folder, capture_output=True, text=True, timeout=120,
            env={**os.environ, "HOME": str(self.folder)}, **self._as_owner())
        secret.unlink()
        assert made.returncode == 0, made.stdout + made.stderr
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                       "unix_socket_directories = ''\nfsync = off\nsynchronous_commit = off\n"
                       "full_page_writes = off\n")

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([str(self.bin_dir / "postgres"), "-D", str(self.data)],
                                         cwd=self.folder, stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=_die_with_test, **self._as_owner())
        end = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD,
                                dbname="postgres", connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                assert self.proc.poll() is None, self.log.read_text()[-3000:]
                assert time.monotonic() < end, self.log.read_text()[-3000:]
                time.sleep(0.1)

    def stop(self) -> None:
        """A fast shutdown: clients are disconnected, the server exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=60)
        self.proc = None

    def create_database(self, name: str) -> None:
        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")

    def url(self, password: bool = True) -> str:
        """The database's URL; without the password, libpq takes it from ``PGPASSWORD``."""
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/{DATABASE}"


@pytest.fixture(scope="module")
def postgres():
    """A running PostgreSQL server with an empty database, removed after the module."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (no initdb and postgres on the PATH or in "
                    "/usr/lib/postgresql/*/bin); install Debian's postgresql package, as "
                    ".ci/run does")
    account = _account() if os.geteuid() == 0 else None
    if os.geteuid() == 0 and account is None:
        pytest.skip("running as root, and there is no unprivileged user (postgres or nobody) to "
                    "run the PostgreSQL server as; it refuses to run as root")
    # Under the system's temp folder itself: the server's user must reach it, and pytest's own
    # folders are private to the user running the tests.
    folder = Path(tempfile.mkdtemp(prefix="mstrain-pg-"))
    server = Server(bin_dir, folder, account)
    try:
        server.init()
        server.start()
        server.create_database(DATABASE)
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------ the machines
def _uts_prefix() -> list[str] | None:
    """How to start a process under a host name of its own, where the system allows it."""
    if shutil.which("unshare") is None:
        return None
    prefix = ["unshare", "--uts"] if os.geteuid() == 0 else \
        ["unshare", "--user", "--map-root-user", "--uts"]
    probe = subprocess.run([*prefix, "hostname", "probe-host"], capture_output=True)
    return prefix if probe.returncode == 0 else None


def as_machine(host: str | None, cmd: list[str]) -> list[str]:
    """``cmd`` run under the host name ``host`` (None: this machine's)."""
    if host is None:
        return cmd
    prefix = _uts_prefix()
    if prefix is None:
        pytest.skip("a process cannot be given a host name of its own here (unshare --uts is "
                    "missing or not permitted), so two machines cannot be told apart")
    return [*prefix, "sh", "-c", 'hostname "$0" && exec "$@"', host, *cmd]


class Machine:
    """One "machine": its output folder, its cache and its log."""

    def __init__(self, root: Path, host: str | None, recipe: Path, data: Path, url: str,
                 *args: str, env: dict[str, str] | None = None) -> None:
        self.host, self.root = host, root / (host or "here")
        self.out, self.cache = self.root / "runs", self.root / "cache"
        self.cmd = as_machine(host, tune_cmd(recipe, data, self.out, "--storage", url, *args))
        self.env = env or {}
        self.logs: list[Path] = []
        self.proc: subprocess.Popen | None = None

    def start(self) -> subprocess.Popen:
        self.logs.append(self.root / f"tune-{len(self.logs)}.log")
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.logs[-1], "w")
        self.proc = subprocess.Popen(self.cmd, cwd=self.root, env={**tune_env(self.cache),
                                                                   **self.env},
                                     stdout=handle, stderr=subprocess.STDOUT, text=True)
        handle.close()
        return self.proc

    @property
    def log(self) -> str:
        return self.logs[-1].read_text()

    def wait_for(self, found, timeout: float = 120) -> None:
        """Waits until ``found()`` holds while the process runs."""
        end = time.monotonic() + timeout
        while not found():
            assert self.proc.poll() is None, f"the study ended early:\n{self.log[-4000:]}"
            assert time.monotonic() < end, f"timed out:\n{self.log[-4000:]}"
            time.sleep(0.05)

    def finish(self, timeout: float = 150) -> int:
        return self.proc.wait(timeout=timeout)


def load(server: Server, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=server.url())


def trial_dirs(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("trial-*")}


def no_password_anywhere(*roots: Path) -> None:
    """The password is in no file the machines wrote (logs, runs, results, databases)."""
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert PASSWORD.encode() not in path.read_bytes(), path


def clean_output(text: str) -> None:
    assert "Traceback" not in text and PASSWORD not in text


# ------------------------------------------------------------------------------ the cases
def test_a_wrong_password_and_another_grace_period_are_refused(postgres, tmp_path):
    from trainer.errors import ConfigError
    from trainer.extras import import_optuna
    from trainer.tune import load_tune_recipe
    from trainer.tune.study import open_storage, open_study

    import_optuna()  # as the command does: Optuna's notes on experimental features quietened

    wrong = postgres.url().replace(PASSWORD, PASSWORD + "x")
    with pytest.raises(ConfigError) as info:
        open_storage(optuna, wrong, lambda study, trial: None, GRACE)
    message = info.value.paragraph()
    assert message.startswith(f"error: Cannot open the study's storage postgresql://mstrain:***@"
                              f"127.0.0.1:{postgres.port}/studies: ")
    assert 'password authentication failed for user "mstrain"' in " ".join(message.split())
    assert PASSWORD not in message

    recipe = write_yaml(tmp_path, "search:\n  lr: {low: 0.01, high: 0.1}\nepochs: 1\n",
                        name="grace.yaml")

    def opened(grace: int):
        loaded = load_tune_recipe(recipe, {"output_dir": str(tmp_path / "runs")},
                                  {"heartbeat_grace": grace})
        storage = open_storage(optuna, postgres.url(), lambda study, trial: None, grace)
        return open_study(optuna, loaded, storage, postgres.url())

    assert opened(GRACE).user_attrs["mstrain_heartbeat_grace"] == GRACE
    with pytest.raises(ConfigError) as info:
        opened(GRACE + 20)
    message = " ".join(info.value.paragraph().split())
    assert message.startswith(f"error: Study 'grace' in postgresql://mstrain:***@127.0.0.1:"
                              f"{postgres.port}/studies was started with a heartbeat grace period "
                              f"of {GRACE} s, and this command has {GRACE + 20} s.")
    assert message.endswith(f"give --heartbeat-grace {GRACE}.")


def test_two_machines_share_one_study_through_a_server_restart(postgres, tmp_path, digits_dir):
    recipe = write_yaml(tmp_path, """
search:
  lr: {low: 0.01, high: 0.1, log: true}
tune:
  trials: 4
  sampler: random
  sampler_seed: 0
  pruner: none
epochs: 1
""" + COMMON, name="shared.yaml")
    machines = [Machine(tmp_path, host, recipe, digits_dir, postgres.url(), "--heartbeat-grace",
                        str(GRACE)) for host in ("machine-a", "machine-b")]
    for machine in machines:
        machine.start()
    # The server restarts while both machines train (once one of them has found it gone): they
    # wait for it and go on.
    for machine in machines:
        machine.wait_for(lambda m=machine: "Run directory:" in m.log)
    postgres.stop()
    end = time.monotonic() + 30
    while not any("cannot be reached" in m.log for m in machines) and time.monotonic() < end:
        time.sleep(0.05)
    postgres.start()
    codes = [machine.finish() for machine in machines]
    logs = [machine.log for machine in machines]
    assert codes == [0, 0], "\n\n".join(log[-3000:] for log in logs)
    for log in logs:
        clean_output(log)
        assert "postgresql://mstrain:***@127.0.0.1" in log  # the banner, without the password
    assert any("is reachable again, after" in log for log in logs)
    study = load(postgres, "shared")
    trials = study.get_trials()
    # Exactly the trials asked for, none twice, none failed.
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    assert len({t.params["lr"] for t in trials}) == 4
    ran = {m.host: {f"trial-{t.number:04d}" for t in trials
                    if t.user_attrs["worker"]["host"] == m.host} for m in machines}
    print("trials per machine:", {host: sorted(names) for host, names in ran.items()})
    assert all(ran.values()) and sum(map(len, ran.values())) == 4
    for machine in machines:
        # Each machine's folder holds the runs of its own trials, and nothing half-written.
        folder = machine.out / "shared"
        assert trial_dirs(folder) == ran[machine.host]
        for t in trials:
            if t.user_attrs["worker"]["host"] == machine.host:
                assert t.user_attrs["run_dir"] == str(folder / f"trial-{t.number:04d}")
                assert len(rows(t.user_attrs["run_dir"])) == 1
        assert not staged(folder)
    # The results are written once, by the machine that found the study finished first, with
    # the best trial over both machines; the other says where they are.
    writers = [m for m in machines if (m.out / "shared" / "best.yaml").exists()]
    assert len(writers) == 1
    writer = writers[0]
    other = next(m for m in machines if m is not writer)
    assert not any((other.out / "shared" / name).exists()
                   for name in ("trials.csv", "summary.json", "history.png"))
    best = (writer.out / "shared" / "best.yaml").read_text()
    assert f"trial {study.best_trial.number}, val_accuracy {study.best_value:.4f}" in best
    assert (f"written on {writer.host} in {(writer.out / 'shared').resolve()}"
            in " ".join(other.log.split()))
    assert "Study shared: 4 of 4 trial(s) finished (4 complete" in other.log
    summary = (writer.out / "shared" / "summary.json").read_text()
    assert f'"storage": "postgresql://mstrain:***@127.0.0.1:{postgres.port}/studies"' in summary
    no_password_anywhere(*(m.root for m in machines))


def test_a_killed_machine_trial_is_retried_by_the_heartbeat(postgres, tmp_path, digits_dir):
    recipe = write_yaml(tmp_path, """
search:
  lr: {low: 0.02, high: 0.06}
tune:
  trials: 2
  sampler: random
  sampler_seed: 1
  pruner: none
epochs: 2
callbacks: [{class: "tests.cbkit:Slow", args: {seconds: 0.01}}]
""" + COMMON, name="killed.yaml")
    flags = ("--heartbeat-grace", str(GRACE))
    a = Machine(tmp_path, "machine-a", recipe, digits_dir, postgres.url(), *flags)
    b = Machine(tmp_path, "machine-b", recipe, digits_dir, postgres.url(), *flags)
    run_a = a.out / "killed" / "trial-0000"

    # Machine A is killed by SIGKILL in its first trial, after its first checkpoint.
    a.start()
    a.wait_for((run_a / "checkpoints" / "latest.json").is_file)
    a.proc.kill()
    a.finish()
    # The same command again on machine A: its dead trial is failed at once and queued again,
    # and the retry resumes the run from its checkpoint; then A is killed again mid-trial.
    a.start()
    a.wait_for(lambda: "Resumed from" in a.log)
    a.proc.kill()
    killed_at = datetime.now()
    a.finish()
    clean_output(a.logs[0].read_text() + a.log)
    assert "Trial 0's process on this machine has ended: failed, and queued again." in a.log

    # Machine B cannot see A's process: the heartbeat fails A's trial after the grace period,
    # and B repeats it from the start, since A's checkpoints are not on this machine.
    b.start()
    assert b.finish() == 0, b.log[-4000:]
    clean_output(b.log)
    study = load(postgres, "killed")
    trials = study.get_trials()
    first, resumed = trials[:2]
    assert [first.state.name, resumed.state.name] == ["FAIL", "FAIL"]
    assert resumed.system_attrs["retry_history"] == [0]  # A resumed its own run
    assert resumed.user_attrs["run_dir"] == str(run_a)
    assert resumed.datetime_complete - killed_at >= timedelta(seconds=GRACE - 2)
    assert f"Trial 1 had no heartbeat for over {GRACE} s" in b.log
    # B's own trial, and the second retry, which B trains from the start in its own folder.
    retried = next(t for t in trials if t.system_attrs.get("retry_history") == [0, 1])
    new = next(t for t in trials[2:] if t is not retried)
    assert [retried.state.name, new.state.name] == ["COMPLETE", "COMPLETE"]
    assert retried.params == first.params != new.params
    text = " ".join(b.log.split())
    assert (f"Trial {retried.number} repeats trial 0 from the start: it ran in {run_a}, on "
            "another machine or in another --output-dir" in text)
    run_b = b.out / "killed" / "trial-0000"
    assert retried.user_attrs["run_dir"] == str(run_b) and len(rows(run_b)) == 2
    assert trial_dirs(b.out / "killed") == {"trial-0000", f"trial-{new.number:04d}"}
    assert trial_dirs(a.out / "killed") == {"trial-0000"}
    assert "Study killed: 2 of 2 trial(s) finished (2 complete" in b.log
    no_password_anywhere(a.root, b.root)


def test_a_server_gone_for_good_ends_the_study_in_one_paragraph(postgres, tmp_path, digits_dir):
    recipe = write_yaml(tmp_path, """
search:
  lr: {low: 0.02, high: 0.06}
tune:
  trials: 1
  pruner: none
epochs: 2
callbacks: [{class: "tests.cbkit:Slow", args: {seconds: 0.02}}]
""" + COMMON, name="outage.yaml")
    # The password kept off the command line, in the environment, as docs/tuning.md suggests.
    here = Machine(tmp_path, None, recipe, digits_dir, postgres.url(password=False),
                   "--heartbeat-grace", str(GRACE), env={"PGPASSWORD": PASSWORD})
    run = here.out / "outage" / "trial-0000"
    here.start()
    here.wait_for((run / "checkpoints" / "latest.json").is_file)
    postgres.stop()
    stopped = time.monotonic()
    try:
        code = here.finish(timeout=60)
        waited = time.monotonic() - stopped
    finally:
        postgres.start()
    log = here.log
    clean_output(log)
    assert code == 2, log[-4000:]
    shown = f"postgresql://mstrain@127.0.0.1:{postgres.port}/studies"
    assert re.search(rf"The study's database {re.escape(shown)} cannot be reached \(.+\); "
                     r"waiting up to 6 s for it\.", log)
    message = " ".join(log[log.index("error: "):].split())
    assert message.startswith(f"error: The study's database {shown} could not be reached for 6 s")
    assert message.endswith("When the server is back, run the same command to continue the "
                            "study.")
    assert 5 <= waited < 30
    # The trial keeps its run and checkpoint, and stays running in the database until the same
    # command (on this machine at once) or another machine (after the grace period) retries it.
    assert [t.state.name for t in load(postgres, "outage").get_trials()] == ["RUNNING"]
    assert (run / "checkpoints" / "latest.json").is_file() and not staged(run)
    no_password_anywhere(here.root)
