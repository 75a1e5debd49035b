"""The ONE script that resets a node and then audits it, in one round trip (run with sudo).

Reset, in order: per component in reverse graph order, its daemon's containers
removed while it still answers (``docker rm -f -v``), then its units stopped
(socket and service in one call); every unit disabled; mounts under the
stack's paths unmounted, deepest first, and the paths removed; piprov's files,
then their directories if empty; the interfaces; the iptables chains and the
rules that jump to them or hold the pod network, by ``iptables-save | filter |
iptables-restore`` (the rules are text, never evaluated by the shell);
systemd reloaded; the record last. Every removal prints ``removed KIND NAME``.

The audit then prints ``left KIND NAME`` for anything of those kinds still
there, and ``piprov-reset-done`` ends the output (a cut output is an error).
Only sh, coreutils, awk, ip, systemctl, docker and iptables-save/-restore:
tested under busybox sh and dash (tests/unit/test_reset.py).
"""

from __future__ import annotations

import posixpath
import shlex

from piprov.reset.model import ResetTarget

DONE = "piprov-reset-done"

_FUNCS = r"""say() { printf 'removed %s %s\n' "$1" "$2"; }
left() { printf 'left %s %s\n' "$1" "$2"; }
present() { for u in "$@"; do systemctl cat "$u" >/dev/null 2>&1 && printf '%s ' "$u"; done; }
# /proc/self/mounts names mounts by their real path: /var/run/docker/netns/... is listed under /run.
mounts_under() { awk -v p="$(readlink -f "$1" 2>/dev/null || echo "$1")/" 'index($2, p) == 1 || $2 == substr(p, 1, length(p) - 1) { print $2 }' /proc/self/mounts | sort -r; }
# iptables-save text without what is ours (mode drop) or only it (mode keep): chains by name or
# prefix, rules in them, rules jumping to them, rules holding a word (the pod network).
# The routes whose destination lies inside one of the networks ($1, CIDRs): host-gw's routes to the other
# nodes' subnets, flannel's own. Printed as `ip route` gave them (a route is deleted by its own words).
routes_in() {
  ip -4 route show 2>/dev/null | awk -v nets="$1" '
    function ip(s,  a) { split(s, a, "[.]"); return ((a[1] * 256 + a[2]) * 256 + a[3]) * 256 + a[4] }
    function inside(d, net,  x, y, n, b, size) {
      # No `^`: busybox awk may be built without its math functions.
      split(d, x, "/"); split(net, y, "/"); n = y[2] + 0; size = 1; for (b = n; b < 32; b++) size *= 2
      if (x[2] == "") x[2] = 32
      return x[2] + 0 >= n && int(ip(x[1]) / size) == int(ip(y[1]) / size) }
    # (not a: busybox awk mixes a global array up with a local array of a function of the same name)
    { k = split(nets, nets_, " "); for (i = 1; i <= k; i++) if (inside($1, nets_[i])) { print; next } }'
}
# With a policy ($4), a filter table's FORWARD chain of another policy is ours too (keep), or gets it (drop).
ipt_filter() {
  awk -v mode="$1" -v chains="$2" -v words="$3" -v policy="${4:-}" '
    function ours(c,  n, i, a) { n = split(chains, a, " "); for (i = 1; i <= n; i++) {
        if (substr(a[i], length(a[i])) == "*") { if (index(c, substr(a[i], 1, length(a[i]) - 1)) == 1) return 1 }
        else if (c == a[i]) return 1 }
      return 0 }
    function mine(line,  n, m, i, j, a, f) {
      if (line ~ /^:/) { split(substr(line, 2), f, " "); return ours(f[1]) }
      if (line !~ /^-A /) return 0
      n = split(line, f, " "); if (ours(f[2])) return 1
      for (i = 3; i < n; i++) if ((f[i] == "-j" || f[i] == "-g") && ours(f[i + 1])) return 1
      # A word counts as a whole field (-s 10.0.0.0/16, -o cbr0), never as a piece of one.
      n = split(line, f, " "); m = split(words, a, " ")
      for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) if (f[i] == a[j]) return 1
      return 0 }
    policy != "" && $1 == ":FORWARD" && $2 != policy {
      if (mode == "drop") print ":FORWARD " policy " " $3; else print; next }
    { m = mine($0); if ((mode == "drop" && !m) || (mode == "keep" && m)) print }'
}
"""


def _q(s: str) -> str:
    return shlex.quote(s)


def _words(items: tuple[str, ...] | list[str]) -> str:
    return " ".join(_q(i) for i in items)


def reset_script(t: ResetTarget) -> str:
    """The reset, then the audit; see the module docstring."""
    return "set -u\n" + _FUNCS + _reset(t) + audit_body(t) + f"echo {DONE}\n"


def _reset(t: ResetTarget) -> str:
    out = ["all=''\n"]
    for s in t.stages:
        if s.docker_host:
            out.append(
                f"if ids=$({_q(t.docker)} -H {_q(s.docker_host)} ps -aq 2>/dev/null) && [ -n \"$ids\" ]; then\n"
                f"  {_q(t.docker)} -H {_q(s.docker_host)} rm -f -v $ids >/dev/null 2>&1 || "
                "echo \"docker rm failed\" >&2\n"
                "  for i in $ids; do say container \"$i\"; done\nfi\n")
        if s.units:
            out.append(f"u=$(present {_words(s.units)})\n"
                       'if [ -n "$u" ]; then systemctl stop $u || echo "systemctl stop $u failed" >&2; '
                       'all="$all $u"; fi\n')
    out.append('if [ -n "$all" ]; then systemctl disable --quiet $all >/dev/null 2>&1; '
               'for u in $all; do say unit "$u"; done; fi\n')
    paths = [*t.paths, *(t.data if t.wipe_data else ())]
    if paths:
        out.append(f"for p in {_words(paths)}; do\n"
                   '  for m in $(mounts_under "$p"); do umount "$m" && say mount "$m"; done\n'
                   '  if [ -e "$p" ] || [ -L "$p" ]; then rm -rf "$p" && say path "$p"; fi\ndone\n')
    if t.files:
        out.append(f"for f in {_words(t.files)}; do\n"
                   '  if [ -e "$f" ] || [ -L "$f" ]; then rm -f "$f" && say file "$f"; fi\ndone\n')
    dirs = _parents([*t.files, *paths, t.record])
    if dirs:
        out.append(f"for d in {_words(dirs)}; do rmdir \"$d\" 2>/dev/null && say dir \"$d\"; done\n")
    for i in t.interfaces:
        out.append(f"if ip link show {_q(i)} >/dev/null 2>&1; then ip link delete {_q(i)} && say interface {_q(i)}; fi\n")
    if t.routes:
        out.append(f"routes_in {_q(' '.join(t.routes))} | while IFS= read -r r; do\n"
                   '  set -f; ip route del $r && say route "$r"; set +f\ndone\n')
    out.append(_iptables(t, "drop"))
    out.append("systemctl daemon-reload\n")
    if t.units:
        out.append(f"systemctl reset-failed {_words(t.units)} >/dev/null 2>&1\n")
    out.append(f"if [ -e {_q(t.record)} ]; then rm -f {_q(t.record)} && say record {_q(t.record)}; fi\n"
               f"rmdir {_q(posixpath.dirname(t.record))} 2>/dev/null\n")
    return "".join(out)


def _parents(paths: list[str]) -> list[str]:
    """The directories piprov's files are in, deepest first, up to (not including) a top-level one."""
    dirs: set[str] = set()
    for p in paths:
        d = posixpath.dirname(p)
        while d.count("/") > 1 and d not in ("/etc/systemd/system", "/var/lib", "/var/run", "/run"):
            dirs.add(d)
            d = posixpath.dirname(d)
    return sorted(dirs, key=lambda d: (-d.count("/"), d))


def _iptables(t: ResetTarget, mode: str) -> str:
    """``drop``: restore each table without what is ours; ``keep``: print it as leftovers."""
    if not t.iptables or not (t.chains or t.matches or t.forward_policy):
        return ""
    chains, words = " ".join(t.chains), " ".join(t.matches)
    act = ('new=$(printf \'%s\\n\' "$cur" | ipt_filter drop "$ch" "$wd" "$pol")\n'
           '    [ "$new" = "$cur" ] && continue\n'
           '    printf \'%s\\n\' "$new" | "$b-restore" && say iptables "$b:$t" || echo "$b-restore failed" >&2\n'
           if mode == "drop" else
           'printf \'%s\\n\' "$cur" | ipt_filter keep "$ch" "$wd" "$pol" | '
           'while IFS= read -r line; do left iptables "$b:$t: $line"; done\n')
    # The FORWARD policy only in the filter table (and in iptables, not ip6tables: dockerd's IPv4 sysctl).
    pol = t.forward_policy or ""
    return (f"ch={_q(chains)}; wd={_q(words)}\n"
            f"for b in {_words(t.iptables)}; do\n"
            '  command -v "$b-save" >/dev/null 2>&1 || continue\n'
            "  for t in filter nat; do\n"
            f'    pol=; [ "$t" = filter ] && [ "${{b##*/}}" = iptables ] && pol={_q(pol)}\n'
            '    cur=$("$b-save" -t "$t" 2>/dev/null) || continue\n'
            f"    {act}"
            "  done\ndone\n")


def audit_body(t: ResetTarget) -> str:
    """``left KIND NAME`` for each thing of the reset's kinds still on the node."""
    out = []
    if t.units:
        out.append(f"for u in {_words(t.units)}; do\n"
                   # Left: running, failed, or enabled. A unit of the OS's own package that piprov's file
                   # overrode (Debian's docker.service) stays installed, as on a fresh node: not left.
                   '  s=$(systemctl show -p ActiveState -p UnitFileState "$u" 2>/dev/null | tr "\\n" " ")\n'
                   '  case "$s" in *ActiveState=inactive*) case "$s" in *UnitFileState=enabled*|*UnitFileState=linked*|'
                   '*UnitFileState=alias*) left unit "$u" ;; esac ;; *) left unit "$u" ;; esac\ndone\n')
    paths = [*t.paths, *(t.data if t.wipe_data else ())]
    for p in paths:
        out.append(f'for m in $(mounts_under {_q(p)}); do left mount "$m"; done\n')
    if paths or t.files:
        out.append(f"for f in {_words([*paths, *t.files, t.record])}; do\n"
                   '  if [ -e "$f" ] || [ -L "$f" ]; then left file "$f"; fi\ndone\n')
    for i in t.interfaces:
        # `ip`, not /sys/class/net: a sysfs mounted in another network namespace lists that one's.
        out.append(f"ip link show {_q(i)} >/dev/null 2>&1 && left interface {_q(i)}\n")
    if t.interfaces:
        pats = " ".join(f"-e ' dev {i} '" for i in t.interfaces)
        out.append(f"ip -4 route show 2>/dev/null | sed 's/$/ /' | grep -F {pats} | "
                   "while IFS= read -r r; do left route \"$r\"; done\n")
    if t.routes:
        out.append(f"routes_in {_q(' '.join(t.routes))} | while IFS= read -r r; do left route \"$r\"; done\n")
    for root in t.container_roots:
        out.append(f"for c in {_q(root)}/containers/*; do [ -e \"$c\" ] && left container \"$c\"; done\n")
    out.append(_iptables(t, "keep"))
    return "".join(out)
