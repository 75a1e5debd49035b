"""The shell piprov runs on a node to change it or probe it is written here.

A node needs only a POSIX sh, coreutils, systemd and docker: the scripts in
this package are built from typed inputs (plan actions, probes, keys) and
tested under dash and busybox sh. The one other place that writes shell for a
node is the facts script, in :mod:`piprov.facts.command`: a fact owns the
command that reads it (as in pyinfra), and it is tested under dash and busybox
too.
"""
