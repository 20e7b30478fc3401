"""PostgreSQL: ``initdb`` + ``postgres`` locally, or the ``postgres`` image.

Why run ``postgres`` in the foreground rather than ``pg_ctl start``: the process backend then owns the
postmaster's pid and process group (stop, stats, reaping) instead of a daemon it only heard about.
Why a non-root user: the postmaster refuses to run as root; as root we drop to ``postgres`` (or
``nobody``) and give that user the data and socket directories.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_hwbench.recipe.specs import MapOf, Scalar, Str, setting
from pytest_hwbench.services.base import (
    Endpoint,
    ServiceStartError,
    StartContext,
    restore_default_signals,
    tail_file,
)
from pytest_hwbench.services.catalog import register
from pytest_hwbench.services.catalog.kind import ServiceKind
from pytest_hwbench.services.probes import CallableProbe, CommandProbe, Probe, ProbeResult, State
from pytest_hwbench.services.service_settings import opt_text, text


@dataclass(frozen=True)
class PostgresServerSettings:
    user: str = setting("postgres", Str(nonempty=True), doc="database user (default postgres)")
    password: str | None = setting(None, opt_text(), convert=text, secret=True,
                                   doc="password (default: none, trust auth on 127.0.0.1)")
    database: str = setting("postgres", Str(nonempty=True), doc="database to create and connect to (default postgres)")
    conf: dict[str, Any] = setting({}, MapOf(Scalar(), what="a mapping of server setting to value"),
                                   doc="server settings passed as -c name=value (mapping), e.g. {shared_buffers: 1GB}")


@register
class Postgres(ServiceKind):
    name = "postgres"
    summary = "PostgreSQL database"
    port = 5432
    image = "postgres:16"
    binary = "postgres"
    binary_search = ("/usr/lib/postgresql/*/bin/postgres", "/usr/pgsql-*/bin/postgres")
    scheme = "postgresql"
    startup_timeout = 60.0
    non_root = True
    stop_signal = signal.SIGINT  # "fast shutdown": SIGTERM waits for clients to disconnect
    Settings = PostgresServerSettings

    def _db(self, ctx: StartContext) -> tuple[str, str | None, str]:
        s = ctx.settings.own_as(PostgresServerSettings)
        return s.user, s.password or None, s.database

    def prepare_process(self, ctx: StartContext, binary: str) -> None:
        user, password, _ = self._db(ctx)
        initdb = Path(binary).resolve().parent / "initdb"
        if not initdb.exists():
            raise ServiceStartError(ctx.name, f"initdb not found next to {binary}",
                                    hint="install the PostgreSQL server package (it ships initdb)")
        data, sock = ctx.work_dir / "data", ctx.work_dir / "sock"
        argv = [str(initdb), "-D", str(data), "-U", user, "--auth=trust", "--encoding=UTF8", "--no-sync",
                "--locale=C"]
        pwfile = None
        if password:
            pwfile = ctx.work_dir / "pwfile"
            pwfile.write_text(password)
            argv[argv.index("--auth=trust")] = "--auth-host=scram-sha-256"
            argv += ["--auth-local=trust", f"--pwfile={pwfile}"]
        for d in (data, sock):
            d.mkdir(mode=0o700)
        if ctx.run_as:
            import pwd

            pw = pwd.getpwnam(ctx.run_as)
            for p in (data, sock, *([pwfile] if pwfile else [])):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            user_kw: dict[str, Any] = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        else:
            user_kw = {}
        log = ctx.log_dir / f"{ctx.name}.log"
        with open(log, "ab") as fh:
            done = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  cwd=ctx.work_dir, check=False, timeout=300, preexec_fn=restore_default_signals,
                                  **user_kw)
        if pwfile:
            pwfile.unlink()
        if done.returncode != 0:
            tail = tail_file(log)
            raise ServiceStartError(ctx.name, f"initdb failed (exit status {done.returncode})", log_tail=tail,
                                    log_path=str(log))
        ctx.info["data_dir"] = str(data)

    def process_args(self, ctx: StartContext, binary: str) -> list[str]:
        args = ["-D", str(ctx.work_dir / "data"), "-p", str(ctx.port), "-k", str(ctx.work_dir / "sock"),
                "-c", f"listen_addresses={ctx.host}"]
        for key, value in ctx.settings.own_as(PostgresServerSettings).conf.items():
            args += ["-c", f"{key}={value}"]
        return args

    def container_env(self, ctx: StartContext) -> dict[str, str]:
        user, password, database = self._db(ctx)
        env = {"POSTGRES_USER": user, "POSTGRES_DB": database}
        if password:
            env["POSTGRES_PASSWORD"] = password
        else:
            env["POSTGRES_HOST_AUTH_METHOD"] = "trust"
        return env

    def container_command(self, ctx: StartContext) -> list[str] | None:
        conf = ctx.settings.own_as(PostgresServerSettings).conf
        if not conf:
            return None
        return ["postgres", *[a for k, v in conf.items() for a in ("-c", f"{k}={v}")]]

    def probe(self, ctx: StartContext) -> Probe:
        user, password, _ = self._db(ctx)
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return CommandProbe(("pg_isready", "-h", "{host}", "-p", "{port}", "-U", user, "-d", "postgres"))

        def check(host: str, port: int, timeout: float) -> ProbeResult:
            import psycopg

            try:
                with psycopg.connect(host=host, port=port, user=user, password=password, dbname="postgres",
                                     connect_timeout=max(1, int(timeout))) as conn:
                    conn.execute("select 1")
            except psycopg.OperationalError as err:
                text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                answering = "starting up" in text or "shutting down" in text or "recovery" in text
                return ProbeResult(State.ANSWERING if answering else State.DOWN, text)
            return ProbeResult(State.READY, "select 1")

        return CallableProbe(check, what="psycopg connect + select 1")

    def after_ready(self, ctx: StartContext, endpoint: Endpoint) -> dict[str, Any]:
        database = self._db(ctx)[2]
        if database != "postgres" and ctx.backend == "process":  # the image creates POSTGRES_DB itself
            import psycopg

            user, password, _ = self._db(ctx)
            with psycopg.connect(host=endpoint.host, port=endpoint.port, user=user, password=password,
                                 dbname="postgres", autocommit=True) as conn:
                conn.execute(f'create database "{database}"')
        return {}

    def endpoint(self, ctx: StartContext, host: str, port: int, ports: dict[str, int]) -> Endpoint:
        user, password, database = self._db(ctx)
        auth = user + (f":{password}" if password else "")
        extra: dict[str, Any] = {"user": user, "database": database,
                                 "dsn": f"postgresql://{auth}@{host}:{port}/{database}"}
        if password:
            extra["password"] = password
        if ctx.backend == "process":
            extra["socket_dir"] = str(ctx.work_dir / "sock")
        return Endpoint(host=host, port=port, url=f"postgresql://{user}@{host}:{port}/{database}", extra=extra,
                        name=ctx.name, kind=self.name)
