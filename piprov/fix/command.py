"""The one script that makes a node's fixes (``plan.NodeFix``), as root, busybox sh and dash included."""

from __future__ import annotations

import shlex

from piprov.fix.plan import BACKUP_SUFFIX, NodeFix
from piprov.shell import script as sh

# /etc/fstab's swap lines (third field "swap"), commented out; the first backup is kept, never overwritten.
_SWAP_OFF = f"""step swapoff
if command -v dphys-swapfile >/dev/null 2>&1; then dphys-swapfile swapoff || true; \
systemctl disable --quiet dphys-swapfile.service 2>/dev/null || true; fi
swapoff -a || fail
step comment out the swap lines of /etc/fstab
if [ -f /etc/fstab ] && awk '$1 !~ /^#/ && $3 == "swap" {{ f = 1 }} END {{ exit !f }}' /etc/fstab; then
  [ -e /etc/fstab{BACKUP_SUFFIX} ] || cp /etc/fstab /etc/fstab{BACKUP_SUFFIX} || fail
  t=$(mktemp /etc/{sh.TEMP_PREFIX}XXXXXX) || fail
  awk '$1 !~ /^#/ && $3 == "swap" {{ print "#" $0; next }} {{ print }}' /etc/fstab > "$t" || {{ rm -f "$t"; fail; }}
  chmod 0644 "$t" && mv -f "$t" /etc/fstab || {{ rm -f "$t"; fail; }}
fi
"""

# update-alternatives names the legacy variants on Debian 10 and later; an OS without them is said.
_IPTABLES = """step iptables: the legacy backend
for t in iptables ip6tables; do
  [ -x "/usr/sbin/$t-legacy" ] || { echo "no /usr/sbin/$t-legacy" >&2; fail; }
  update-alternatives --set "$t" "/usr/sbin/$t-legacy" >/dev/null || fail
done
"""


def fix_script(fix: NodeFix) -> str:
    """The node's fixes in one script; the reboot is not in it (the run reboots one node at a time)."""
    body = ""
    if fix.cmdline is not None:
        path = shlex.quote(fix.cmdline.path)
        bak = shlex.quote(fix.cmdline.path + BACKUP_SUFFIX)
        body += f"step back up {path}\n[ -e {bak} ] || cp {path} {bak} || fail\n"
        body += sh.script([fix.cmdline])
    if fix.swap_off:
        body += _SWAP_OFF
    if fix.iptables_legacy:
        body += _IPTABLES
    return sh.wrap(body)
