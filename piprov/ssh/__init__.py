"""How piprov logs in, as OpenSSH would: ssh_config, keys and the agent, known_hosts, sudo.

The transport room's helpers (``piprov.transport`` opens the connections):
``config`` resolves a node's settings from the inventory and ``~/.ssh/config``,
``keys`` finds and unlocks the keys (files, ssh-agent) and signs the way old
servers need, ``hostkeys`` reads and pins known_hosts, ``sudo`` builds the
commands that become root, ``secrets`` holds what is asked once per run.
"""
