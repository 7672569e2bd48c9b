# Runs one Python snippet inside an eval sandbox, in a child process of envd.
#
# This runner is started while the eval template is built, so it sits in the
# snapshot already imported and waiting: a request pays no interpreter
# startup. Everything per request (memory limit, random seed) is applied
# after the control message, never before the checkpoint.
#
# Protocol on fd 3, one JSON object a line (see js-runner.cjs):
#   out {"type":"ready"}; in {"codeFile","cwd","memoryBytes"};
#   out {"type":"started"}, then {"type":"result",...}.
import ast
import builtins
import inspect
import json
import linecache
import os
import resource
import sys
import traceback

# Common standard modules, imported before the checkpoint so that importing
# them in a snippet is free. Nothing that keeps secret state: `random`'s
# state is re-seeded below, `ssl` is deliberately absent.
import collections, datetime, decimal, fractions, functools, itertools, math, re, statistics, string, textwrap  # noqa: E401,F401

CONTROL_FD = 3
FILENAME = "<eval>"


def send(message):
    try:
        os.write(CONTROL_FD, (json.dumps(message) + "\n").encode())
    except OSError:
        pass


def read_control():
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(CONTROL_FD, 65536)
        if not chunk:
            sys.exit(0)
        data += chunk
    return json.loads(data)


def vm_size():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def encode(value):
    if value is None:
        return "null"
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return json.dumps(repr(value))


def print_user_traceback(err):
    # Drop the runner's own frames: the user sees a traceback of their code.
    tb = err.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != FILENAME:
        tb = tb.tb_next
    traceback.print_exception(type(err), err, tb)


def run(source):
    tree = ast.parse(source, FILENAME, "exec")
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    body = compile(tree, FILENAME, "exec", flags=flags)
    expr = compile(ast.Expression(last.value), FILENAME, "eval", flags=flags) if last else None
    scope = {"__name__": "__main__", "__builtins__": builtins, "__file__": FILENAME}
    send({"type": "started"})
    if not any(c is not None and c.co_flags & inspect.CO_COROUTINE for c in (body, expr)):
        exec(body, scope)
        return eval(expr, scope) if expr else None

    async def run_async():
        pending = eval(body, scope)
        if inspect.iscoroutine(pending):
            await pending
        value = eval(expr, scope) if expr else None
        return (await value) if inspect.iscoroutine(value) else value

    import asyncio

    return asyncio.run(run_async())


def main():
    send({"type": "ready"})
    control = read_control()
    if "random" in sys.modules:
        sys.modules["random"].seed(os.urandom(32))
    memory = control.get("memoryBytes")
    if memory:
        limit = vm_size() + memory
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.chdir(control["cwd"])
    sys.path.insert(0, control["cwd"])
    sys.argv = [FILENAME]
    with open(control["codeFile"], encoding="utf-8") as f:
        source = f.read()
    linecache.cache[FILENAME] = (len(source), None, source.splitlines(True), FILENAME)
    try:
        value = run(source)
    except SystemExit:
        raise
    except BaseException as err:  # noqa: B902 - every failure of user code is reported
        if isinstance(err, SyntaxError):
            sys.stderr.write("".join(traceback.format_exception_only(type(err), err)))
        else:
            print_user_traceback(err)
        sys.stderr.flush()
        send({"type": "result", "ok": False, "error": {"name": type(err).__name__, "message": str(err)}})
        sys.exit(1)
    sys.stdout.flush()
    send({"type": "result", "ok": True, "json": encode(value)})


main()
