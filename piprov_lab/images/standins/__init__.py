"""Stand-ins for the seed stack's components that have no obtainable binary.

Neither flannel nor any Kubernetes server binary (hyperkube, kubelet, apiserver)
can be installed on this machine, so the virtual Pi lab runs these Python
programs in their place. Each one honours the public contract of the real
component (flags, ports, files, health endpoints, etcd keys, API paths) closely
enough for piprov and Debian's kubectl to drive them like the real thing; each
module's docstring says which contract it follows and what it leaves out.

This package is test infrastructure. It uses only the Python standard library
(plus PyYAML, bundled in the image, for YAML pod manifests), runs inside the lab
images, and is never imported by the product package ``piprov``.
"""
