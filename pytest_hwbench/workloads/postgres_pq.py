"""Prepared statements run through psycopg's libpq binding (``psycopg.pq``) with one reader per transaction.

Why not ``AsyncConnection.execute`` for the measured transaction: measured on the development VM (uvloop,
one client, TPC-B-like, 7 round trips), psycopg's async layer cost ~700-800 µs of client CPU per transaction
where ``pgbench -M prepared`` needs ~160 µs. Per statement it builds a cursor and its adapter map, converts
the query and dumps the parameters through the adapters, and for *every* wait on the socket adds and removes
a reader, arms and cancels a 0.1 s timer and creates a future. This module keeps psycopg for everything it is
good at (connecting, the pool and its reconnects, error classes with SQLSTATE, TLS, authentication) and
drives only the hot path itself, the way pgbench does: statements prepared once per connection under names of
their own, parameters sent as text, results read from libpq as the socket becomes readable, and one reader
registered on the socket for the whole transaction. docs/performance.md has the before/after figures.

Round-trip mode sends one statement and waits for its result before the next (pgbench's built-in script
with ``-M prepared``: BEGIN and END are prepared statements too); pipeline mode sends all of them and one
Sync, then reads every result (pgbench between ``\\startpipeline`` and ``\\endpipeline``).

A failed statement raises the psycopg error for its SQLSTATE (``psycopg.errors.error_from_result``) after the
transaction was rolled back, so the connection goes back to the pool idle; a cancelled transaction (the
engine's drain timeout) leaves the connection mid-query, and the pool then closes it instead of reusing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Sequence
from typing import Any

#: (statement name, parameters as text) — one step of a transaction.
Step = tuple[bytes, Sequence[bytes]]


class PreparedSet:
    """Named SQL statements, prepared lazily on each connection that runs them (new connections after a
    reconnect prepare again)."""

    def __init__(self, prefix: str, statements: dict[str, str]) -> None:
        self.names = {key: f"{prefix}_{key}".encode() for key in statements}
        self._sql = {self.names[key]: sql.encode() for key, sql in statements.items()}
        self._done: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()

    async def ensure(self, conn: Any) -> None:
        """Prepare every statement on ``conn`` (one pipelined round trip), once per connection."""
        if conn in self._done:
            return
        from psycopg import pq

        pg = conn.pgconn
        async with _Socket(pg) as sock:
            pg.enter_pipeline_mode()
            try:
                for name, sql in self._sql.items():
                    pg.send_prepare(name, sql)
                pg.pipeline_sync()
                results = await sock.pipeline_results()
            finally:
                _exit_pipeline(pg)
        for res in results:
            if res.status != pq.ExecStatus.COMMAND_OK:
                raise _error(conn, res)
        self._done[conn] = True


def _exit_pipeline(pg: Any) -> None:
    """Leave pipeline mode; where results are still pending (the wait was cancelled or the connection broke)
    libpq refuses, and the connection stays busy: the pool then closes it rather than reuse it."""
    with contextlib.suppress(Exception):
        pg.exit_pipeline_mode()


def _error(conn: Any, res: Any) -> Exception:
    from psycopg import errors

    return errors.error_from_result(res, encoding=conn.info.encoding)


class _Socket:
    """One reader on the connection's socket while a transaction runs; awaits readiness through a future."""

    def __init__(self, pg: Any) -> None:
        self.pg = pg
        self.fd = pg.socket
        self.loop = asyncio.get_running_loop()
        self.fut: asyncio.Future[None] | None = None

    async def __aenter__(self) -> _Socket:
        self.loop.add_reader(self.fd, self._wake)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.loop.remove_reader(self.fd)

    def _wake(self) -> None:
        fut = self.fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def _readable(self) -> None:
        self.fut = self.loop.create_future()
        try:
            await self.fut
        finally:
            self.fut = None

    async def flush(self) -> None:
        """Send what libpq buffered; waits for writability only when the socket's buffer is full."""
        pg = self.pg
        while pg.flush():
            self.fut = self.loop.create_future()
            self.loop.add_writer(self.fd, self._wake)
            try:
                await self.fut
            finally:
                self.fut = None
                self.loop.remove_writer(self.fd)

    async def _not_busy(self) -> None:
        # No read before the first wait: just after a send the answer cannot be there yet, and a read that
        # finds nothing is a wasted system call per statement. The reader is level-triggered, so an answer
        # that came meanwhile wakes the wait at once.
        pg = self.pg
        while pg.is_busy():
            await self._readable()
            pg.consume_input()

    async def results(self) -> list[Any]:
        """Every result of the statement just sent (round-trip mode)."""
        out: list[Any] = []
        pg = self.pg
        while True:
            await self._not_busy()
            res = pg.get_result()
            if res is None:
                return out
            out.append(res)

    async def pipeline_results(self) -> list[Any]:
        """Every result up to the pipeline's Sync (pipeline mode), Sync excluded."""
        from psycopg import pq

        sync = pq.ExecStatus.PIPELINE_SYNC
        out: list[Any] = []
        pg = self.pg
        await self.flush()
        while True:
            await self._not_busy()
            res = pg.get_result()
            if res is None:  # the end of one statement's results
                continue
            if res.status == sync:
                return out
            out.append(res)


_OK = (1, 2)  # pq.ExecStatus.COMMAND_OK, TUPLES_OK


async def run_transaction(conn: Any, steps: Sequence[Step], *, pipeline: bool) -> list[Any]:
    """Run ``steps`` (prepared statements with text parameters) on ``conn``; one result per step.

    Round trips: each step is sent when the previous one has answered. Pipeline: all steps, then one Sync.
    A failed step raises its psycopg error after a ROLLBACK of whatever transaction it left open.
    """
    pg = conn.pgconn
    async with _Socket(pg) as sock:
        if pipeline:
            pg.enter_pipeline_mode()
            try:
                for name, params in steps:
                    pg.send_query_prepared(name, params)
                pg.pipeline_sync()
                results = await sock.pipeline_results()
            finally:
                _exit_pipeline(pg)
            failed = next((r for r in results if r.status not in _OK), None)
        else:
            results, failed = [], None
            for name, params in steps:
                pg.send_query_prepared(name, params)
                await sock.flush()
                got = await sock.results()
                res = got[-1] if got else None
                if res is None or res.status not in _OK:
                    failed = res
                    break
                results.append(res)
        if failed is not None or len(results) != len(steps):
            await _rollback(pg, sock)
            if failed is None:
                raise _error_text(conn, "no result for a statement")
            raise _first_error(conn, results, failed)
    return results


def _first_error(conn: Any, results: Sequence[Any], failed: Any) -> Exception:
    from psycopg import pq

    fatal = pq.ExecStatus.FATAL_ERROR
    first = next((r for r in results if r.status == fatal), None)
    return _error(conn, first if first is not None else failed)


def _error_text(conn: Any, text: str) -> Exception:
    from psycopg import OperationalError

    return OperationalError(text)


async def _rollback(pg: Any, sock: _Socket) -> None:
    """Leave the connection idle (not in a failed transaction) when it still works."""
    from psycopg import pq

    if pg.status != pq.ConnStatus.OK or pg.transaction_status not in (pq.TransactionStatus.INTRANS,
                                                                      pq.TransactionStatus.INERROR):
        return
    pg.send_query(b"ROLLBACK")
    await sock.flush()
    await sock.results()
