"""`minibox pull|push|login|logout|search`: the registry verbs (docker's words and output)."""

from __future__ import annotations

import os
import sys

from minibox import explain
from minibox.cli.flags import FlagParser
from minibox.errors import MiniboxError


def _parser(verb: str, usage: str, text: str, positionals: tuple[str, ...]) -> FlagParser:
    p = FlagParser(f"minibox {verb}", f"minibox {verb} {usage}", text, positionals)
    p.add("--explain", kind="bool", help="print every request (method, URL, status) to stderr")
    p.add("--config", metavar="DIR", help="config directory: credentials, certs.d "
          "(default $MINIBOX_CONFIG or ~/.minibox)")
    return p


def _common(o: object) -> None:
    if o.config:
        os.environ["MINIBOX_CONFIG"] = os.path.abspath(o.config)
    if o.explain:
        explain.enable()
    else:
        explain.settle()


def _tls(p: FlagParser) -> None:
    p.add("--tls-verify", kind="bool", default=True,
          help="verify the registry's certificate (false also allows plain HTTP)")


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _store():  # noqa: ANN202 - the store module loads only here
    from minibox.image.store import Store

    return Store()  # the data root: --data-root, MINIBOX_DATA_ROOT, or /var/lib/minibox


def _remote(text: str, verb: str):  # noqa: ANN202
    from minibox.image import reference

    ref = reference.parse(text)
    if not ref.registry:
        raise MiniboxError(f"{verb} {text}: no registry in the name; minibox pulls and "
                           "pushes only to a registry you name, as in "
                           f"localhost:5000/{ref.repository}:{ref.tag or 'latest'}")
    return ref


def _registry(host: str, o: object):  # noqa: ANN202
    from minibox.image.registry.client import Registry

    return Registry(host, tls_verify=o.tls_verify)


def pull(argv: list[str]) -> int:
    p = _parser("pull", "[OPTIONS] NAME[:TAG|@DIGEST]",
                "Download an image from a registry into the image store.", ("NAME",))
    _tls(p)
    p.add("--platform", metavar="OS/ARCH", help="which image of a multi-platform index "
          "(default linux/<this machine>)")
    o = p.parse(argv)
    _common(o)
    from minibox.image.registry.pull import pull as do_pull

    ref = _remote(o.name, "pull")
    reg = _registry(ref.registry, o)
    from minibox.cli.bars import Bars

    bars = Bars("Downloading")
    try:
        do_pull(_store(), ref, reg, bars.say, bars.blob, o.platform, bars.status)
    finally:
        reg.close()
    _say(str(ref))
    return 0


def push(argv: list[str]) -> int:
    p = _parser("push", "[OPTIONS] NAME[:TAG]", "Upload an image to a registry.", ("NAME",))
    _tls(p)
    o = p.parse(argv)
    _common(o)
    from minibox.image.registry.push import push as do_push

    ref = _remote(o.name, "push")
    reg = _registry(ref.registry, o)
    from minibox.cli.bars import Bars

    bars = Bars("Pushing")
    try:
        do_push(_store(), ref, reg, bars.say, bars.blob)
    finally:
        reg.close()
    return 0


def login(argv: list[str]) -> int:
    p = _parser("login", "[OPTIONS] SERVER", "Log in to a registry: check the credentials "
                "and store them in CONFIG/config.json (0600).", ("SERVER",))
    _tls(p)
    p.add("-u", "--username", metavar="USER", help="user name")
    p.add("-p", "--password", metavar="PASSWORD", help="password (prefer --password-stdin)")
    p.add("--password-stdin", kind="bool", help="read the password from stdin")
    o = p.parse(argv)
    _common(o)
    from minibox.image.registry import config

    host = _host(o.server)
    password = o.password
    if o.password_stdin:
        if password:
            raise MiniboxError("--password and --password-stdin are mutually exclusive")
        password = sys.stdin.readline().rstrip("\r\n")
    user = o.username
    if not user or password is None:
        if not sys.stdin.isatty() or o.password_stdin:
            raise MiniboxError("login needs a user name and a password: -u USER "
                               "--password-stdin (or -p PASSWORD)")
        import getpass

        user = user or input("Username: ")
        password = getpass.getpass("Password: ")
    if o.password:
        sys.stderr.write("WARNING! Using --password via the CLI is insecure. "
                         "Use --password-stdin.\n")
    from minibox.image.registry.client import Registry

    reg = Registry(host, tls_verify=o.tls_verify, creds=(user, password))
    try:
        reg.check_login()
    finally:
        reg.close()
    config.store_credentials(host, user, password)
    _say("Login Succeeded")
    return 0


def logout(argv: list[str]) -> int:
    p = _parser("logout", "[OPTIONS] SERVER",
                "Remove a registry's stored credentials.", ("SERVER",))
    o = p.parse(argv)
    _common(o)
    from minibox.image.registry import config

    host = _host(o.server)
    if config.remove_credentials(host):
        _say(f"Removing login credentials for {host}")
    else:
        _say(f"Not logged in to {host}")
    return 0


def _host(server: str) -> str:
    """docker accepts `https://host:port/` as well as `host:port`."""
    host = server.split("://", 1)[-1].rstrip("/").split("/", 1)[0]
    if not host:
        raise MiniboxError(f'"{server}" is not a registry address (use HOST[:PORT])')
    return host


def search(argv: list[str]) -> int:
    p = _parser("search", "[OPTIONS] REGISTRY/TERM",
                "Search a private registry: its catalog (GET /v2/_catalog), repositories "
                "whose name contains TERM, with their tags.", ("TERM",))
    _tls(p)
    p.add("--limit", kind="int", default=25, metavar="N", help="at most N results")
    p.add("-f", "--filter", kind="append", metavar="tag=TAG",
          help="only repositories that have tag TAG")
    o = p.parse(argv)
    _common(o)
    host, _, term = o.term.partition("/")
    if "." not in host and ":" not in host and host != "localhost":
        raise MiniboxError(f"search {o.term}: name the registry, as in localhost:5000/{o.term}"
                           " (minibox searches private registries only)")
    want_tags = []
    for f in o.filter:
        key, _, value = f.partition("=")
        if key != "tag" or not value:
            raise MiniboxError(f'search: bad filter "{f}": a private registry\'s catalog '
                               "can be filtered by tag=TAG only")
        want_tags.append(value)
    if o.limit < 1:
        raise MiniboxError("search: --limit must be at least 1")
    from minibox.image.registry.catalog import search as do_search

    reg = _registry(host, o)
    try:
        rows = do_search(reg, term, want_tags, o.limit)
    finally:
        reg.close()
    width = max([len("NAME")] + [len(f"{host}/{name}") for name, _ in rows]) + 3
    _say(f"{'NAME':<{width}}TAGS")
    for name, tags in rows:
        _say(f"{host + '/' + name:<{width}}{' '.join(tags)}")
    return 0
