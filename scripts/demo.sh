#!/usr/bin/env bash
# Set everything up, boot a virtual Pi lab on this machine (fresh HypriotOS-like
# nodes), provision the Kubernetes cluster on it with `piprov up`, and show it.
# Run it again: the lab is kept and `piprov up` finds nothing to change.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

LAB=${PIPROV_LAB:-demo}
DIR=/var/lib/piprov-demo
mkdir -p "$DIR"
if ! piprov lab status --name "$LAB" >/dev/null 2>&1; then
  piprov lab up --name "$LAB" --nodes "${NODES:-3}" --decoys "${DECOYS:-2}"
fi
piprov lab status --name "$LAB"
piprov lab inventory --name "$LAB" > "$DIR/inventory.yaml"
echo
echo "== piprov up -i $DIR/inventory.yaml"
piprov up -i "$DIR/inventory.yaml"
piprov kubeconfig -i "$DIR/inventory.yaml" -o "$DIR/kubeconfig" --use
echo
echo "== kubectl get nodes"
kubectl --kubeconfig "$DIR/kubeconfig" get nodes -o wide
echo
piprov status -i "$DIR/inventory.yaml" || true
cat <<EOT

The demo cluster is up. Try:
  export PATH=$PWD/.venv/bin:\$PATH PIPROV_INVENTORY=$DIR/inventory.yaml
  piprov plan                      # nothing to change (exit code 0)
  piprov graph                     # the dependency graph that orders everything
  piprov discover --interface $(piprov lab status --name "$LAB" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["bridge_ip"])')
  kubectl --kubeconfig $DIR/kubeconfig get pods --all-namespaces
  piprov lab down --name $LAB      # remove the lab again
EOT
