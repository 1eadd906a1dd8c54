"""A small docker-style flag parser for the verbs on the fast path.

argparse (with the re and gettext modules it pulls in) costs about as much import time
as runc needs to start a whole container, so `minibox run` parses its flags here. The
rules are docker's (spf13/pflag with interspersed flags off): flags come before the
first positional; everything after the positionals belongs to the command; `--name
value`, `--name=value`, `-x value`, `-xvalue` and `-it` (short booleans together).
A bad flag is one line and exit 125, like every other minibox error.
"""

from __future__ import annotations

from minibox.errors import MiniboxError


class Options:
    """The parsed flags, as attributes (types.Options without importing types)."""

    def __init__(self, **values: object) -> None:
        self.__dict__.update(values)


class _Flag:
    def __init__(self, names: tuple[str, ...], dest: str, kind: str, help: str,
                 metavar: str | None, choices: tuple[str, ...] | None, default: object) -> None:
        self.names = names
        self.dest = dest
        self.kind = kind  # bool, str, int, append
        self.help = help
        self.metavar = metavar
        self.choices = choices
        self.default = default


class FlagParser:
    def __init__(self, prog: str, usage: str, description: str,
                 positionals: tuple[str, ...] = (), rest: str | None = None,
                 interspersed: bool = False) -> None:
        self.prog = prog
        self.interspersed = interspersed  # flags after positionals too (docker's image verbs)
        self.usage = usage
        self.description = description
        self.positionals = positionals
        self.rest = rest
        self.flags: list[_Flag] = []
        self._by_name: dict[str, _Flag] = {}
        self._sections: list[tuple[int, str]] = []

    def section(self, title: str) -> None:
        self._sections.append((len(self.flags), title))

    def add(self, *names: str, dest: str | None = None, kind: str = "str", help: str = "",
            metavar: str | None = None, choices: tuple[str, ...] | None = None,
            default: object = None) -> None:
        long = next((n for n in names if n.startswith("--")), names[0])
        flag = _Flag(names, dest or long.lstrip("-").replace("-", "_"), kind, help, metavar,
                     choices, [] if kind == "append" and default is None else default)
        self.flags.append(flag)
        for n in names:
            self._by_name[n] = flag

    def _fail(self, message: str) -> MiniboxError:
        return MiniboxError(f"{message} (see: {self.prog} --help)")

    def _set(self, ns: Options, flag: _Flag, shown: str, value: str | None) -> None:
        if flag.kind == "bool":
            if value is not None and value not in ("true", "false"):
                raise self._fail(f'invalid argument "{value}" for "{shown}" flag')
            setattr(ns, flag.dest, value != "false")
            return
        assert value is not None
        if flag.choices and value not in flag.choices:
            raise self._fail(f'invalid argument "{value}" for "{shown}" flag: '
                             f"use one of {', '.join(flag.choices)}")
        parsed: object = value
        if flag.kind == "int":
            try:
                parsed = int(value, 0)
            except ValueError:
                raise self._fail(f'invalid argument "{value}" for "{shown}" flag: '
                                 "not a whole number") from None
        if flag.kind == "append":
            getattr(ns, flag.dest).append(parsed)
        else:
            setattr(ns, flag.dest, parsed)

    def parse(self, argv: list[str]) -> Options:
        ns = Options(**{f.dest: (list(f.default) if isinstance(f.default, list)
                                         else f.default if f.kind != "bool" else bool(f.default))
                                for f in self.flags})
        positionals: list[str] = []
        i = 0
        while i < len(argv):
            tok = argv[i]
            i += 1
            if tok == "--help":
                raise SystemExit(self.print_help())
            if tok == "--":
                positionals.extend(argv[i:])
                break
            if tok.startswith("--"):
                name, eq, value = tok.partition("=")
                flag = self._by_name.get(name)
                if flag is None:
                    raise self._fail(f"unknown flag: {name}")
                if flag.kind != "bool" and not eq:
                    if i >= len(argv):
                        raise self._fail(f"flag needs an argument: {name}")
                    value = argv[i]
                    i += 1
                self._set(ns, flag, name, value if eq or flag.kind != "bool" else None)
            elif tok.startswith("-") and len(tok) > 1:
                j = 1
                while j < len(tok):
                    name = "-" + tok[j]
                    flag = self._by_name.get(name)
                    if flag is None:
                        raise self._fail(f"unknown shorthand flag: '{tok[j]}' in {tok}")
                    if flag.kind == "bool":
                        self._set(ns, flag, name, None)
                        j += 1
                        continue
                    # -xVALUE and -x=VALUE attach the value; otherwise it is the next
                    # argument, taken as it is (so `-e =x` is checked, not trimmed).
                    value = tok[j + 1:].removeprefix("=")
                    if j + 1 == len(tok):
                        if i >= len(argv):
                            raise self._fail(f"flag needs an argument: '{tok[j]}' in {tok}")
                        value = argv[i]
                        i += 1
                    self._set(ns, flag, name, value)
                    break
            else:
                positionals.append(tok)
                if len(positionals) == len(self.positionals) and self.rest \
                        and not self.interspersed:
                    positionals.extend(argv[i:])
                    break
        if len(positionals) < len(self.positionals):
            missing = self.positionals[len(positionals)]
            raise self._fail(f'"{self.prog}" requires at least {len(self.positionals)} '
                             f"argument{'s' if len(self.positionals) > 1 else ''} "
                             f"(missing {missing})")
        for k, name in enumerate(self.positionals):
            setattr(ns, name.lower(), positionals[k])
        extra = positionals[len(self.positionals):]
        if self.rest:
            setattr(ns, self.rest, extra)
        elif extra:
            raise self._fail(f"unexpected argument: {extra[0]}")
        return ns

    def print_help(self) -> int:
        import sys

        lines = [f"usage: {self.usage}", "", self.description, "", "options:"]
        sections = dict(self._sections)
        for k, f in enumerate(self.flags):
            if k in sections:
                lines += ["", f"{sections[k]}:"]
            names = ", ".join(f.names)
            if f.kind != "bool":
                names += f" {f.metavar or f.dest.upper()}"
            lines.append(f"  {names:<34} {f.help}")
        sys.stdout.write("\n".join(lines) + "\n")
        return 0
