"""etcdctl 2.1.1 WRAPPER (installed as /usr/local/bin/etcdctl in the lab's ``etcd-amd64:2.1.1`` image).

Not etcdctl 2.1.1 (no 2.x binary is obtainable): it takes etcdctl 2.1.1's command
line and runs the REAL etcdctl 3.4 (/opt/etcd3/bin/etcdctl) in its v2 mode
(``ETCDCTL_API=2``), whose v2 commands are etcdctl 2.x's (etcdctl/ctlv2), so the
requests, output and exit codes of ``get``/``set``/``ls``/``mk``/``rm``... are real
etcdctl code against the v2 API. What the wrapper enforces is the 2.1.1 surface
(etcd-io/etcd v2.1.1 etcdctl/main.go:26-60, codegangsta/cli at f7ebb76,
Godeps/_workspace/src/github.com/codegangsta/cli/app.go:66-125):

* global flags: ``--debug``, ``--no-sync``, ``--output/-o``, ``--peers/-C``,
  ``--cert-file``, ``--key-file``, ``--ca-file``, ``--username/-u``, and cli's
  ``--help/-h``, ``--version/-v``. There is no ``--endpoint``/``--endpoints`` (2.2+)
  and no ``--timeout``/``--total-timeout``. An unknown flag: ``Incorrect Usage.`` and
  the help on stdout and exit status 0, as 2.1.1 (app.go:88-93; main.go:59 ignores
  app.Run's error).
* commands: backup, cluster-health, mk, mkdir, rm, rmdir, get, ls, set, setdir,
  update, updatedir, watch, exec-watch, member, import, user, role, auth, help
  (main.go:36-56). Any other, e.g. the v3 ``put``, ``endpoint health``, ``del``:
  ``No help topic for 'put'``, status 0 (the default action is help, app.go:121-124,
  help.go:125-129). ``ETCDCTL_API`` means nothing to 2.1.1 and is dropped.
* peers: ``--peers`` or ``ETCDCTL_PEERS``, default ``127.0.0.1:4001,127.0.0.1:2379``,
  ``http://`` added when a peer has no scheme (etcdctl/command/util.go:59-93);
  handed to etcdctl 3.4 as ``--endpoints``.
* TLS: ``--cert-file``/``--key-file``/``--ca-file`` (or ``ETCDCTL_CERT_FILE``,
  ``ETCDCTL_KEY_FILE``, ``ETCDCTL_CA_FILE``, util.go:93-116) are handed on as they
  are: etcdctl 3.4's v2 mode has the same three flags and variables
  (v3.4.23 etcdctl/ctlv2/ctl.go:48-50, ctlv2/command/util.go:160-175), so the
  handshake is the real etcdctl's.
* ``--version``: ``etcdctl version 2.1.1``.

Not covered: the commands' own flags are checked by etcdctl 3.4's v2 commands (a
superset of 2.1.1's: e.g. 3.4 ``ls`` knows ``--quorum``, 2.1.1 did not); error
texts of a failed cluster sync are 3.4's.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from . import goflag

VERSION = "2.1.1"
REAL_ETCDCTL = os.environ.get("STANDIN_REAL_ETCDCTL", "/opt/etcd3/bin/etcdctl")
COMMANDS = ("backup", "cluster-health", "mk", "mkdir", "rm", "rmdir", "get", "ls", "set", "setdir", "update",
            "updatedir", "watch", "exec-watch", "member", "import", "user", "role", "auth")

_S, _B = goflag.string, goflag.boolean
# main.go:29-38, then cli's HelpFlag and VersionFlag (app.go:70-79); "a, b" names are aliases.
FLAGS = [_B("debug"), _B("no-sync"), _S("output", "simple"), _S("o", "simple"), _S("peers"), _S("C"),
         _S("cert-file"), _S("key-file"), _S("ca-file"), _S("username"), _S("u"),
         _B("help"), _B("h"), _B("version"), _B("v")]
ALIASES = {"o": "output", "C": "peers", "u": "username", "h": "help", "v": "version"}

HELP = f"""NAME:
   etcdctl - A simple command line client for etcd.

USAGE:
   etcdctl [global options] command [command options] [arguments...]

VERSION:
   {VERSION}

COMMANDS:
   {chr(10).join('   ' + c for c in COMMANDS).strip()}
   help, h\tShows a list of commands or help for one command

GLOBAL OPTIONS:
   --debug\t\t\toutput cURL commands which can be used to reproduce the request
   --no-sync\t\t\tdon't synchronize cluster information before sending request
   --output, -o 'simple'\toutput response in the given format (`simple`, `extended` or `json`)
   --peers, -C \t\ta comma-delimited list of machine addresses in the cluster (default: "127.0.0.1:4001,127.0.0.1:2379")
   --cert-file \t\tidentify HTTPS client using this SSL certificate file
   --key-file \t\t\tidentify HTTPS client using this SSL key file
   --ca-file \t\t\tverify certificates of HTTPS-enabled servers using this CA bundle
   --username, -u \t\tprovide username[:password] and prompt if password is not supplied.
   --help, -h\t\t\tshow help
   --version, -v\t\tprint the version
"""


def _peers(value: str) -> str:
    """util.go:59-93: flag, else ETCDCTL_PEERS, else the default; http:// when no scheme."""
    raw = value or os.environ.get("ETCDCTL_PEERS", "") or "127.0.0.1:4001,127.0.0.1:2379"
    return ",".join(p if "://" in p else "http://" + p for p in (x.strip() for x in raw.split(",")) if p)


def translate(argv: list[str]) -> tuple[list[str] | None, str]:
    """(etcdctl 3.4 argv, "") to run, or (None, what 2.1.1 prints) when it would not run a command."""
    try:
        opts = goflag.parse(argv, FLAGS)
    except goflag.HelpRequested:
        return None, HELP
    except goflag.FlagError:
        return None, f"Incorrect Usage.\n\n{HELP}\n"
    values = dict(opts.values)
    for short, long in ALIASES.items():
        if short in opts.given:
            values[long] = opts.values[short]
    if values["help"]:
        return None, HELP
    if values["version"]:
        return None, f"etcdctl version {VERSION}\n"
    if not opts.args or opts.args[0] in ("help", "h"):
        topic = opts.args[1] if len(opts.args) > 1 else ""
        if topic and topic not in COMMANDS:
            return None, f"No help topic for '{topic}'\n"
        return None, HELP
    if opts.args[0] not in COMMANDS:
        return None, f"No help topic for '{opts.args[0]}'\n"
    out = [REAL_ETCDCTL, f"--endpoints={_peers(values['peers'])}", f"--output={values['output']}"]
    out += [f"--{name}" for name in ("debug", "no-sync") if values[name]]
    out += [f"--{name}={values[name]}" for name in ("cert-file", "key-file", "ca-file", "username") if values[name]]
    return out + opts.args, ""


def main(argv: list[str] | None = None) -> NoReturn:
    cmd, text = translate(sys.argv[1:] if argv is None else argv)
    if cmd is None:
        sys.stdout.write(text)
        sys.exit(0)
    env = {k: v for k, v in os.environ.items() if k not in ("ETCDCTL_API", "ETCDCTL_ENDPOINTS", "ETCDCTL_PEERS")}
    env["ETCDCTL_API"] = "2"
    os.execve(cmd[0], cmd, env)


if __name__ == "__main__":
    main()
