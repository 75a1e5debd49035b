"""Changing a running cluster through Kubernetes: the API client, drain, flannel leases, rollouts, node procedures.

Rooms: :mod:`.client` (the apiserver client and the one Ready helper),
:mod:`.discovery` (what the apiserver can do, from its discovery documents;
Ready freshness by node lease or heartbeat), :mod:`.pods` (which pods a drain
removes, skips or refuses: pure), :mod:`.drain` (cordon, drain per release), :mod:`.etcd` (flannel's subnet
leases in the master's etcd), :mod:`.rollout` (batches, state file, the
rolling `up`), :mod:`.procedures` (`node add` and `node remove` as named steps).
This file imports none of them, so the light client costs no plan or SSH import.
"""
