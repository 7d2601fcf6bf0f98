"""Runs `opportunities` commands in processes forked from one that has already imported the
CLI, so that a command costs its work and not the imports (about two seconds each).

Each command is still a process of its own: its arguments, environment, working directory,
standard streams and exit code are its own, and it ends as the console script does
(`starter.cli.main`, which leaves by `os._exit`). The forking process imports and never
connects or starts a thread, so forking it is safe.

`python tests/support/cli_forks.py SOCKET` serves requests on a Unix socket: one JSON object
per connection (`argv`, `env`, `cwd`, and the paths of the `stdin`, `stdout` and `stderr`
files), answered with the exit code once the command's process has ended.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
from typing import Any


def serve(path: str) -> None:
    from starter.cli import main  # imported once, here, before any fork

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    running = selectors.DefaultSelector()
    running.register(listener, selectors.EVENT_READ, None)
    while True:
        for key, _ in running.select():
            if key.data is None:
                connection, _ = listener.accept()
                request = json.loads(_read_all(connection))
                pid = os.fork()
                if pid == 0:
                    listener.close()
                    connection.close()
                    _run(request, main)
                exited = os.pidfd_open(pid)
                running.register(exited, selectors.EVENT_READ, (pid, connection))
            else:
                pid, connection = key.data
                running.unregister(key.fd)
                os.close(key.fd)
                _, status = os.waitpid(pid, 0)
                connection.sendall(str(os.waitstatus_to_exitcode(status)).encode())
                connection.close()


def _read_all(connection: socket.socket) -> bytes:
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _run(request: dict[str, Any], main: Any) -> None:
    """In the forked process: become the command, then run it; never returns."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for fd, name, mode in ((0, "stdin", os.O_RDONLY), (1, "stdout", os.O_WRONLY | os.O_TRUNC),
                               (2, "stderr", os.O_WRONLY | os.O_TRUNC)):  # fmt: skip
            opened = os.open(request[name], mode)
            os.dup2(opened, fd)
            os.close(opened)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = list(request["argv"])
        main()
    except BaseException:  # anything else is the command's crash
        import traceback

        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(70)


if __name__ == "__main__":
    os.environ.pop("COLUMNS", None)  # each command's console reads its own width
    os.environ.pop("LINES", None)
    serve(sys.argv[1])
