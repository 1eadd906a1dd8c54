"""`minibox exec [OPTIONS] CONTAINER CMD [ARG...]`: run a command in a running container."""

from __future__ import annotations

from minibox.cli.flags import FlagParser
from minibox.cli.main import die_unless_root, store
from minibox.errors import MiniboxError


def main(argv: list[str]) -> int:
    p = FlagParser("minibox exec", "minibox exec [OPTIONS] CONTAINER CMD [ARG...]",
                   "Run a command in a running container: setns(2) into each of its "
                   "namespaces and join its cgroup.",
                   positionals=("CONTAINER",), rest="command")
    p.add("-i", "--interactive", kind="bool", help="keep stdin open")
    p.add("-t", "--tty", kind="bool", help="allocate a pseudo-terminal")
    p.add("-e", "--env", kind="append", metavar="KEY=VALUE", help="set an environment variable")
    p.add("-w", "--workdir", metavar="DIR", help="working directory inside the container")
    p.add("-u", "--user", metavar="UID[:GID]", help="user to run as")
    p.add("--explain", kind="bool", help="print every kernel step to stderr")
    o = p.parse(argv)
    if o.explain:
        from minibox import explain

        explain.enable()
    die_unless_root("exec")
    if not o.command:
        raise MiniboxError('"minibox exec" requires at least 2 arguments: CONTAINER CMD')
    st = store()
    cid = st.resolve(o.container)
    spec = st.spec(cid)
    from minibox.runtime import spec as S

    proc = dict(spec["process"])
    proc["args"] = o.command
    proc["env"] = S.merge_env(proc["env"], S.parse_env(o.env, []))
    if o.workdir:
        proc["cwd"] = o.workdir
    if o.user:
        from minibox.cli.run import parse_user

        uid, gid, _home = parse_user(o.user, spec["root"]["path"],
                                     S.has_namespace(spec, "user"))
        proc["user"] = {"uid": uid, "gid": gid}
    from minibox.runtime.exec import exec_in

    proc["terminal"] = o.tty
    if o.tty and "TERM=" not in "".join(e[:5] for e in proc["env"]):
        proc["env"] = proc["env"] + ["TERM=xterm"]
    return exec_in(st, cid, proc, tty=o.tty)
