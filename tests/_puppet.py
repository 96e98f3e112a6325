"""A client process the tests drive line by line: the "other process" of the seed scenarios.

``Puppet(pool, name)`` starts ``python tests/_puppet.py`` which connects to the arbiter of
``pool`` as ``name`` (``c``).  ``puppet.run("f = c.open('/a', 'rb', buffering=0)")`` executes a statement
there; ``puppet.eval("f.read()")`` returns the value of an expression (JSON-able, or its
repr).  Errors come back as ``PuppetError`` naming the exception type and errno.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import traceback
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


class PuppetError(Exception):
    def __init__(self, kind: str, errno: int | None, message: str) -> None:
        super().__init__(f"{kind}({errno}): {message}")
        self.kind = kind
        self.errno = errno


class Puppet:
    def __init__(self, pool: str, name: str, *, env: dict[str, str] | None = None,
                 preexec: Any = None) -> None:
        src = os.path.join(os.path.dirname(HERE), "src")
        environment = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
        environment.update(env or {})
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "_puppet.py"), pool, name],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=environment, preexec_fn=preexec)
        self.pid = self.proc.pid
        self._read()                     # "ready", or the error connecting

    def _read(self) -> Any:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise PuppetError("EOF", None, self.proc.stderr.read())  # type: ignore[union-attr]
        reply = json.loads(line)
        if reply[0] == "err":
            raise PuppetError(reply[1], reply[2], reply[3])
        return reply[1]

    def _send(self, kind: str, code: str) -> Any:
        self.proc.stdin.write(json.dumps([kind, code]) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return self._read()

    def run(self, code: str) -> None:
        self._send("exec", code)

    def eval(self, code: str) -> Any:
        return self._send("eval", code)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        os.kill(self.pid, sig)
        if sig == signal.SIGKILL:
            self.proc.wait(10)
            self.close_pipes()

    def close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                pipe.close()  # type: ignore[union-attr]
            except OSError:
                pass

    def quit(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send("exec", "c.close(force=True, timeout=1)")
            except (PuppetError, OSError, ValueError):
                pass
            self.proc.kill()
            self.proc.wait(10)
        self.close_pipes()


def _main() -> None:
    pool, name = sys.argv[1], sys.argv[2]
    import daxfs

    def reply(*fields: Any) -> None:
        sys.stdout.write(json.dumps(list(fields), default=repr) + "\n")
        sys.stdout.flush()

    uid = os.environ.get("PUPPET_UID")
    if uid is not None:
        # Drop to another user only now: the interpreter and daxfs are loaded (the
        # interpreter's own directory may not be readable by that user).
        import numpy  # noqa: F401  (loaded while it still can be)
        os.setgroups([])
        os.setgid(int(uid))
        os.setuid(int(uid))
    try:
        space: dict[str, Any] = {"c": daxfs.connect(pool, name=name), "daxfs": daxfs, "os": os}
    except BaseException as exc:
        reply("err", type(exc).__name__, getattr(exc, "errno", None), str(exc))
        return
    reply("ok", "ready")
    for line in sys.stdin:
        kind, code = json.loads(line)
        try:
            if kind == "exec":
                exec(code, space)
                reply("ok", None)
            else:
                reply("ok", eval(code, space))
        except BaseException as exc:
            reply("err", type(exc).__name__, getattr(exc, "errno", None),
                  f"{exc}\n{traceback.format_exc()}")


if __name__ == "__main__":
    _main()
