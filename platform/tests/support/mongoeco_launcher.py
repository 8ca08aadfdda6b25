#!/usr/bin/env python3
"""A MongoDB stand-in for the test suites: mongoeco's wire-protocol server.

FOR TESTS ONLY. mongoeco (PyPI, Python >= 3.13) is an in-memory engine that
speaks MongoDB's wire protocol well enough for the store conformance suite
and the end-to-end tests to run the MongoDB backend in CI, where no real
``mongod`` can be installed. It is not MongoDB: no replica set, no real
query planner, no durability. Tests that depend on a behaviour it does not
have say so and keep MongoDB's behaviour as their expectation.

Two deviations of mongoeco 4.11 from MongoDB break the official Rust driver;
this launcher corrects them at start-up (monkeypatches here, site-packages
is left alone):

1. ``find`` rejects a ``limit`` (and ``skip``, ``batchSize``, ``getMore``;
   also inside ``explain``) sent as int64 -- which the Rust driver always does -- and its error reply
   then carries no ``code``. Those fields are turned into plain integers
   before validation, and any error reply without a ``code`` gets one
   (``UnknownError``, 8) so the driver can parse it.
2. ``cursor.id`` is answered as int32 when it fits; MongoDB always sends
   int64 and the driver refuses anything else. It is sent as int64.

Usage::

    python3.13 mongoeco_launcher.py [--port N] [--port-file PATH]

It listens on 127.0.0.1 (``--port 0``, the default, picks a free port),
prints ``mongodb://127.0.0.1:PORT/?directConnection=true`` on one line of
stdout once it accepts connections (and writes the port to ``--port-file``
if given), and exits when its parent process dies or on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

from mongoeco.core.bson_scalars import BsonInt32, BsonInt64
from mongoeco.wire import executor as wire_executor
from mongoeco.wire import proxy as wire_proxy

# Top-level command fields MongoDB takes as any integer type.
_INTEGER_FIELDS = ("limit", "skip", "batchSize", "getMore", "ntoreturn", "maxTimeMS")
_UNKNOWN_ERROR = 8


def _plain_integers(body: Any) -> Any:
    if isinstance(body, dict):
        for field in _INTEGER_FIELDS:
            value = body.get(field)
            if isinstance(value, (BsonInt64, BsonInt32)):
                body[field] = int(value.value)
        # explain wraps the command it explains.
        if isinstance(body.get("explain"), dict):
            _plain_integers(body["explain"])
    return body


def _wire_reply(result: Any) -> Any:
    if not isinstance(result, dict):
        return result
    if result.get("ok") in (0, 0.0, False) and "code" not in result:
        result["code"] = _UNKNOWN_ERROR
        result.setdefault("codeName", "UnknownError")
    cursor = result.get("cursor")
    if isinstance(cursor, dict):
        cursor_id = cursor.get("id")
        if isinstance(cursor_id, int) and not isinstance(cursor_id, bool):
            cursor["id"] = BsonInt64(cursor_id)
    return result


def patch_mongoeco() -> None:
    """Corrects the two deviations described in the module docstring."""
    executor_cls = wire_executor.WireCommandExecutor
    build_context = executor_cls._build_request_context

    def build_request_context(self, body, *args, **kwargs):
        return build_context(self, _plain_integers(body), *args, **kwargs)

    executor_cls._build_request_context = build_request_context

    server_cls = wire_proxy.AsyncMongoEcoProxyServer
    render = server_cls._render_wire_result

    def render_wire_result(self, header, request_id, state):
        state.result = _wire_reply(state.result)
        return render(self, header, request_id, state)

    server_cls._render_wire_result = render_wire_result


async def serve(port: int, port_file: str | None) -> None:
    patch_mongoeco()
    parent = os.getppid()
    server = wire_proxy.AsyncMongoEcoProxyServer(host="127.0.0.1", port=port)
    address = await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if port_file:
        tmp = f"{port_file}.tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"{address.port}\n")
        os.replace(tmp, port_file)
    print(f"mongodb://127.0.0.1:{address.port}/?directConnection=true", flush=True)
    try:
        # The parent going away (CI script ended, test runner killed) ends us:
        # we are re-parented, so getppid() changes.
        while not stop.is_set():
            if os.getppid() != parent:
                break
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            except TimeoutError:
                pass
    finally:
        await server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--port-file", help="file to write the port to once listening")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.port_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
