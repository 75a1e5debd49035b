"""What a node is like now: one shell command, and a strict parser for its output.

:func:`facts_command` (:mod:`.command`) builds ONE POSIX sh script (run it
with sudo) that prints framed records::

    PIPROV-FACTS-BEGIN 1
    uname x86_64
    hostname rpi-node-1
    osrelease <base64 of /etc/os-release | ->
    file <path> present <sha256|-> <mode> <owner> <group> <size> <base64|!blob|!empty|!big|!secret>
    blob <base64 of the !blob files before it, one after another>
    file <path> missing | file <path> notafile
    unit <name> <is-active> <is-enabled>
    addr <ifname> <address/len>
    bin <name> <absolute path | ->      (``command -v`` under sudo's PATH)
    PIPROV-FACTS-END <number of records>

:func:`parse_facts` (:mod:`.parse`) checks the framing and hands each record
to the parser registered for its tag (:mod:`.records`), which builds the typed
values of :mod:`.model`; it returns :class:`NodeFacts` or raises
:class:`~piprov.errors.FactsError` naming the host and what was wrong. A
file's checksum is only computed on the node when its content does not come
back (``!big``); otherwise the parser hashes the content, which saves a
process per file. Nothing here decides anything. ``NodeFacts.etcd_keys`` is not
read by the script: the controller reads the keys piprov owns from etcd's v2
API (:func:`piprov.kube.etcd.read_keys`) while the script runs.
"""

from piprov.facts.command import BEGIN, END, HOST_FILES, MAX_CONTENT, facts_command
from piprov.facts.model import DEVICE_INIT, OCCIDENTALIS, Address, EtcdKeyFacts, EtcdKeyState, FileFacts, NodeFacts, UnitFacts
from piprov.facts.parse import parse_facts

__all__ = [
    "BEGIN",
    "END",
    "HOST_FILES",
    "MAX_CONTENT",
    "DEVICE_INIT",
    "OCCIDENTALIS",
    "Address",
    "EtcdKeyFacts",
    "EtcdKeyState",
    "FileFacts",
    "NodeFacts",
    "UnitFacts",
    "facts_command",
    "parse_facts",
]
