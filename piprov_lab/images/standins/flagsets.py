"""The command line of each hyperkube server, per release line, as data.

One table per (line, server): ``name kind default``, one flag a line (kind is
``str``, ``int``, ``bool`` or ``dur``, a Go duration; ``-`` is the empty
default). ``common.parse_flags`` refuses any flag not in the server's table plus
the global table of its line, the way pflag does (``unknown flag: --x``, exit 1:
cmd/hyperkube/hyperkube.go Run/RunToExit for 1.1; cobra's flag error for the
1.18 binaries). Flags the stand-in has no use for are accepted and do nothing.

Sources. The kubernetes repository cannot be fetched here (1.9 GB), so the
tables were written from kubernetes source files found in the code index
without a tag, and from each release's documented command-line reference:
* 1.1 kubelet: cmd/kubelet/app/server.go ``KubeletServer.AddFlags`` (a 1.0/1.1
  era copy: --api-servers, --config, --hostname-override, --allow-privileged,
  --pod-infra-container-image, --docker-endpoint, --root-dir, --healthz-*,
  --node-status-update-frequency, ...). --register-schedulable was added for
  1.1 (a master's kubelet registering unschedulable); --node-ip came later (not in 1.1).
* 1.1 apiserver: cmd/kube-apiserver/app/server.go ``APIServer.AddFlags``;
  controller-manager: cmd/kube-controller-manager/app/controllermanager.go;
  scheduler: plugin/cmd/kube-scheduler/app/server.go; proxy:
  cmd/kube-proxy/app/server.go (healthz on 127.0.0.1:10249).
* 1.1 global flags: hyperkube's base flag set (cmd/hyperkube/hyperkube.go
  ``Flags``: --help/-h, the Go flag.CommandLine of glog, pflag.CommandLine:
  --version, --log-flush-frequency).
* 1.18: cmd/kubelet/app/options/options.go (--api-servers gone since 1.8,
  --allow-privileged removed in 1.15: privileged is always allowed and
  PodSecurityPolicy governs it; --config is now a KubeletConfiguration file and
  static pods come from --pod-manifest-path), cmd/kube-apiserver/app/options
  and k8s.io/apiserver/pkg/server/options (--insecure-port/--insecure-bind-address
  still there, deprecated), cmd/kube-controller-manager/app/options,
  cmd/kube-scheduler/app/options, cmd/kube-proxy/app/server.go (healthz on
  0.0.0.0:10256, metrics and /healthz on 127.0.0.1:10249), klog's flags.
These lists are the flags piprov's templates use plus the commonly used ones of
each release, not every flag the release had: a real flag missing here is
refused by the stand-in (and should be added with its source), a flag here that
the release did not have is a bug.
"""

from __future__ import annotations

from typing import Any

GLOBAL = {
    "1.1": """
help bool false
version str -
log-flush-frequency dur 5s
alsologtostderr bool false
log-backtrace-at str -
log-dir str -
logtostderr bool false
stderrthreshold int 2
v int 0
vmodule str -
""",
    "1.18": """
help bool false
version str -
log-flush-frequency dur 5s
add-dir-header bool false
alsologtostderr bool false
log-backtrace-at str -
log-dir str -
log-file str -
log-file-max-size int 1800
logtostderr bool true
skip-headers bool false
skip-log-headers bool false
stderrthreshold int 2
v int 0
vmodule str -
""",
}

APISERVER = {
    "1.1": """
etcd-servers str -
etcd-config str -
etcd-prefix str /registry
etcd-servers-overrides str -
insecure-bind-address str 127.0.0.1
insecure-port int 8080
address str -
port int 0
bind-address str 0.0.0.0
public-address-override str -
secure-port int 6443
advertise-address str -
tls-cert-file str -
tls-private-key-file str -
cert-dir str /var/run/kubernetes
client-ca-file str -
token-auth-file str -
basic-auth-file str -
service-account-key-file str -
service-account-lookup bool false
keystone-url str -
oidc-issuer-url str -
oidc-client-id str -
oidc-ca-file str -
oidc-username-claim str sub
authorization-mode str AlwaysAllow
authorization-policy-file str -
admission-control str AlwaysAdmit
admission-control-config-file str -
service-cluster-ip-range str -
portal-net str -
service-node-port-range str -
service-node-ports str -
allow-privileged bool false
api-prefix str /api
storage-version str -
runtime-config str -
cloud-provider str -
cloud-config str -
cors-allowed-origins str -
event-ttl dur 1h
external-hostname str -
master-service-namespace str default
max-requests-inflight int 400
min-request-timeout int 1800
long-running-request-regexp str -
kubelet-https bool true
kubelet-timeout dur 5s
kubelet-certificate-authority str -
kubelet-client-certificate str -
kubelet-client-key str -
kubelet-port int 10250
ssh-user str -
ssh-keyfile str -
max-connection-bytes-per-sec int 0
profiling bool true
watch-cache bool true
apiserver-count int 1
""",
    "1.18": """
etcd-servers str -
etcd-prefix str /registry
etcd-servers-overrides str -
etcd-cafile str -
etcd-certfile str -
etcd-keyfile str -
etcd-compaction-interval dur 5m
storage-backend str -
storage-media-type str application/vnd.kubernetes.protobuf
insecure-bind-address str 127.0.0.1
insecure-port int 8080
address str -
port int 0
bind-address str 0.0.0.0
secure-port int 6443
advertise-address str -
tls-cert-file str -
tls-private-key-file str -
cert-dir str /var/run/kubernetes
client-ca-file str -
token-auth-file str -
basic-auth-file str -
anonymous-auth bool true
enable-bootstrap-token-auth bool false
service-account-key-file str -
service-account-issuer str -
service-account-signing-key-file str -
service-account-lookup bool true
oidc-issuer-url str -
oidc-client-id str -
oidc-ca-file str -
oidc-username-claim str sub
authorization-mode str AlwaysAllow
admission-control str -
enable-admission-plugins str -
disable-admission-plugins str -
admission-control-config-file str -
service-cluster-ip-range str -
service-node-port-range str 30000-32767
allow-privileged bool false
runtime-config str -
feature-gates str -
cloud-provider str -
cloud-config str -
cors-allowed-origins str -
event-ttl dur 1h
external-hostname str -
master-service-namespace str default
max-requests-inflight int 400
max-mutating-requests-inflight int 200
min-request-timeout int 1800
request-timeout dur 1m
kubelet-https bool true
kubelet-timeout dur 5s
kubelet-preferred-address-types str -
kubelet-certificate-authority str -
kubelet-client-certificate str -
kubelet-client-key str -
profiling bool true
enable-swagger-ui bool false
watch-cache bool true
apiserver-count int 1
endpoint-reconciler-type str lease
requestheader-client-ca-file str -
proxy-client-cert-file str -
proxy-client-key-file str -
audit-log-path str -
""",
}

CONTROLLER_MANAGER = {
    "1.1": """
master str -
kubeconfig str -
port int 10252
address str 127.0.0.1
cloud-provider str -
cloud-config str -
concurrent-endpoint-syncs int 5
concurrent-rc-syncs int 5
service-sync-period dur 5m
node-sync-period dur 10s
resource-quota-sync-period dur 10s
namespace-sync-period dur 5m
pvclaimbinder-sync-period dur 10s
horizontal-pod-autoscaler-sync-period dur 30s
deleting-pods-qps float 0.1
deleting-pods-burst int 10
register-retry-count int 10
node-monitor-grace-period dur 40s
node-startup-grace-period dur 60s
node-monitor-period dur 2s
pod-eviction-timeout dur 5m
service-account-private-key-file str -
root-ca-file str -
cluster-name str kubernetes
cluster-cidr str -
allocate-node-cidrs bool false
profiling bool true
""",
    "1.18": """
master str -
kubeconfig str -
port int 10252
address str 127.0.0.1
bind-address str 0.0.0.0
secure-port int 10257
controllers str *
leader-elect bool true
leader-elect-lease-duration dur 15s
leader-elect-renew-deadline dur 10s
leader-elect-retry-period dur 2s
cloud-provider str -
cloud-config str -
concurrent-endpoint-syncs int 5
concurrent-rc-syncs int 5
concurrent-deployment-syncs int 5
node-monitor-grace-period dur 40s
node-startup-grace-period dur 1m
node-monitor-period dur 2s
pod-eviction-timeout dur 5m
enable-taint-manager bool true
node-eviction-rate float 0.1
secondary-node-eviction-rate float 0.01
unhealthy-zone-threshold float 0.55
large-cluster-size-threshold int 50
terminated-pod-gc-threshold int 12500
horizontal-pod-autoscaler-sync-period dur 15s
service-account-private-key-file str -
use-service-account-credentials bool false
root-ca-file str -
cluster-name str kubernetes
cluster-cidr str -
service-cluster-ip-range str -
allocate-node-cidrs bool false
cluster-signing-cert-file str -
cluster-signing-key-file str -
authentication-kubeconfig str -
authorization-kubeconfig str -
feature-gates str -
kube-api-qps float 20
kube-api-burst int 30
min-resync-period dur 12h
profiling bool true
""",
}

SCHEDULER = {
    "1.1": """
master str -
kubeconfig str -
port int 10251
address str 127.0.0.1
algorithm-provider str DefaultProvider
policy-config-file str -
profiling bool true
kube-api-qps float 50
kube-api-burst int 100
bind-pods-qps float 50
bind-pods-burst int 100
""",
    "1.18": """
master str -
kubeconfig str -
config str -
port int 10251
address str 0.0.0.0
bind-address str 0.0.0.0
secure-port int 10259
leader-elect bool true
leader-elect-lease-duration dur 15s
leader-elect-renew-deadline dur 10s
leader-elect-retry-period dur 2s
lock-object-name str kube-scheduler
lock-object-namespace str kube-system
algorithm-provider str -
policy-config-file str -
policy-configmap str -
use-legacy-policy-config bool false
scheduler-name str default-scheduler
hard-pod-affinity-symmetric-weight int 1
authentication-kubeconfig str -
authorization-kubeconfig str -
feature-gates str -
kube-api-qps float 50
kube-api-burst int 100
profiling bool true
contention-profiling bool true
""",
}

KUBELET = {
    "1.1": """
api-servers str -
config str -
manifest-url str -
hostname-override str -
pod-infra-container-image str gcr.io/google_containers/pause:0.8.0
allow-privileged bool false
host-network-sources str file
docker-endpoint str unix:///var/run/docker.sock
root-dir str /var/lib/kubelet
address str 0.0.0.0
port int 10250
read-only-port int 10255
enable-server bool true
healthz-port int 10248
healthz-bind-address str 127.0.0.1
cadvisor-port int 4194
node-status-update-frequency dur 10s
sync-frequency dur 10s
file-check-frequency dur 20s
http-check-frequency dur 20s
register-node bool true
register-schedulable bool true
kubeconfig str /var/lib/kubelet/kubeconfig
auth-path str -
cluster-dns str -
cluster-domain str -
master-service-namespace str default
tls-cert-file str -
tls-private-key-file str -
cert-dir str /var/run/kubernetes
network-plugin str -
cloud-provider str -
cloud-config str -
resource-container str /kubelet
docker-daemon-container str /docker-daemon
system-container str -
cgroup-root str -
container-runtime str docker
configure-cbr0 bool false
pod-cidr str -
max-pods int 40
docker-exec-handler str native
image-gc-high-threshold int 90
image-gc-low-threshold int 80
low-diskspace-threshold-mb int 256
minimum-container-ttl-duration dur 1m
maximum-dead-containers-per-container int 2
maximum-dead-containers int 100
registry-qps float 0
registry-burst int 10
enable-debugging-handlers bool true
oom-score-adj int -999
streaming-connection-idle-timeout dur 0s
runonce bool false
containerized bool false
""",
    "1.18": """
kubeconfig str -
bootstrap-kubeconfig str -
config str -
pod-manifest-path str -
manifest-url str -
hostname-override str -
node-ip str -
pod-infra-container-image str k8s.gcr.io/pause:3.2
container-runtime str docker
container-runtime-endpoint str unix:///var/run/dockershim.sock
image-service-endpoint str -
docker-endpoint str unix:///var/run/docker.sock
root-dir str /var/lib/kubelet
cert-dir str /var/lib/kubelet/pki
address str 0.0.0.0
port int 10250
read-only-port int 10255
enable-server bool true
healthz-port int 10248
healthz-bind-address str 127.0.0.1
node-status-update-frequency dur 10s
sync-frequency dur 1m
file-check-frequency dur 20s
http-check-frequency dur 20s
register-node bool true
register-schedulable bool true
register-with-taints str -
node-labels str -
cluster-dns str -
cluster-domain str -
resolv-conf str /etc/resolv.conf
tls-cert-file str -
tls-private-key-file str -
client-ca-file str -
anonymous-auth bool true
authentication-token-webhook bool false
authorization-mode str AlwaysAllow
rotate-certificates bool false
network-plugin str -
cni-bin-dir str /opt/cni/bin
cni-conf-dir str /etc/cni/net.d
non-masquerade-cidr str 10.0.0.0/8
hairpin-mode str promiscuous-bridge
make-iptables-util-chains bool true
cloud-provider str -
cloud-config str -
provider-id str -
fail-swap-on bool true
cgroup-driver str cgroupfs
cgroups-per-qos bool true
cgroup-root str -
runtime-cgroups str -
kubelet-cgroups str -
system-cgroups str -
enforce-node-allocatable str pods
kube-reserved str -
system-reserved str -
eviction-hard str -
eviction-soft str -
max-pods int 110
pod-cidr str -
image-gc-high-threshold int 85
image-gc-low-threshold int 80
serialize-image-pulls bool true
volume-plugin-dir str -
feature-gates str -
runtime-request-timeout dur 2m
streaming-connection-idle-timeout dur 4h
enable-debugging-handlers bool true
oom-score-adj int -999
""",
}

PROXY = {
    "1.1": """
master str -
kubeconfig str -
bind-address str 0.0.0.0
healthz-port int 10249
healthz-bind-address str 127.0.0.1
hostname-override str -
oom-score-adj int -999
resource-container str /kube-proxy
proxy-mode str -
proxy-port-range str -
iptables-sync-period dur 30s
masquerade-all bool false
udp-timeout dur 250ms
""",
    "1.18": """
master str -
kubeconfig str -
config str -
write-config-to str -
bind-address str 0.0.0.0
healthz-bind-address str 0.0.0.0:10256
healthz-port int 10256
metrics-bind-address str 127.0.0.1:10249
metrics-port int 10249
hostname-override str -
cluster-cidr str -
oom-score-adj int -999
proxy-mode str -
proxy-port-range str -
iptables-sync-period dur 30s
iptables-min-sync-period dur 0s
iptables-masquerade-bit int 14
masquerade-all bool false
conntrack-max-per-core int 32768
conntrack-min int 131072
conntrack-tcp-timeout-established dur 24h
conntrack-tcp-timeout-close-wait dur 1h
nodeport-addresses str -
udp-timeout dur 250ms
cleanup bool false
feature-gates str -
kube-api-qps float 5
kube-api-burst int 10
profiling bool false
""",
}

SERVERS = {"apiserver": APISERVER, "controller-manager": CONTROLLER_MANAGER, "scheduler": SCHEDULER,
           "kubelet": KUBELET, "proxy": PROXY}
KINDS: dict[str, type] = {"str": str, "int": int, "bool": bool, "dur": float, "float": float}


def table(text: str) -> list[tuple[str, type, Any]]:
    """The (name, kind, default) rows of one table."""
    rows = []
    for line in text.strip().splitlines():
        name, kind, default = line.split(None, 2)
        rows.append((name, KINDS[kind], default if kind == "dur" else _value(kind, default)))
    return rows


def _value(kind: str, text: str) -> Any:
    if text == "-":
        return "" if kind == "str" else None
    if kind == "bool":
        return text == "true"
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    return text
