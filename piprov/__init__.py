"""piprov: turn a shelf of Raspberry Pis into a Kubernetes cluster, and keep it that way."""

__version__ = "0.1.0"
