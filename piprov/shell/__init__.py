"""Every line of shell piprov runs on a node is written here.

A node needs only a POSIX sh, coreutils, systemd and docker: the scripts in
this package are built from typed inputs (plan actions, probes, keys) and
tested under dash and busybox sh. Nothing outside this package writes shell
for a node.
"""
