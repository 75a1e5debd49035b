"""A non-Pi host on the lab LAN that advertises itself over mDNS.

Run by the lab inside the decoy's own network namespace (``ip netns exec``):
``python -m piprov_lab.decoy --kind printer|laptop --ip IP --mac MAC``. It
publishes what such a device publishes, so discovery has to tell Pis from
the rest by more than "it answers mDNS":

- printer: ``_ipp._tcp`` and ``_http._tcp`` (a network printer's web page);
- laptop: ``_workstation._tcp`` (name carries its MAC, as avahi does) and
  ``_ssh._tcp``, i.e. exactly the services a Pi publishes, but a non-Pi MAC
  and another host name.

Hostile kinds (issue 15), each what a spoofer on the LAN could send:

- loopback-pi: a Pi's services whose address is 127.0.0.1;
- spoofed-mac: a Pi's services at its own address, the name claiming a
  Raspberry Pi MAC its interface does not have;
- six-names: six Pi-like hosts (``_ssh._tcp``, Pi MACs in
  ``_workstation._tcp`` names) all at its one address;
- own-address: a Pi's services at the lab bridge's address (the controller's).
"""

from __future__ import annotations

import argparse
import signal
import socket
import threading

from zeroconf import ServiceInfo, Zeroconf


def _pi_like(host_label: str, claimed_mac: str, ip: str) -> list[ServiceInfo]:
    addr = [socket.inet_aton(ip)]
    host = f"{host_label}.local."
    return [
        ServiceInfo("_workstation._tcp.local.", f"{host_label} [{claimed_mac}]._workstation._tcp.local.",
                    addresses=addr, port=9, server=host),  # fmt: skip
        ServiceInfo("_ssh._tcp.local.", f"{host_label}._ssh._tcp.local.", addresses=addr, port=22, server=host),
    ]


def hostile(kind: str, ip: str, index: int, bridge_ip: str) -> list[ServiceInfo]:
    fake = f"b8:27:eb:66:{index:02x}"
    if kind == "loopback-pi":
        return _pi_like(f"black-pearl-{90 + index}", f"{fake}:01", "127.0.0.1")
    if kind == "spoofed-mac":
        return _pi_like(f"black-pearl-{90 + index}", f"{fake}:02", ip)
    if kind == "own-address":
        return _pi_like(f"black-pearl-{90 + index}", f"{fake}:03", bridge_ip)
    out: list[ServiceInfo] = []
    for k in range(6):
        out += _pi_like(f"black-pearl-{60 + 6 * index + k}", f"{fake}:{0x10 + k:02x}", ip)
    return out


def services(kind: str, ip: str, mac: str, index: int, bridge_ip: str = "") -> list[ServiceInfo]:
    if kind not in ("printer", "laptop"):
        return hostile(kind, ip, index, bridge_ip)
    addr = [socket.inet_aton(ip)]
    if kind == "printer":
        host = f"BRN{mac.replace(':', '')[-6:].upper()}.local."
        name = f"Brother HL-L2350DW series ({index})"
        return [
            ServiceInfo("_ipp._tcp.local.", f"{name}._ipp._tcp.local.", addresses=addr, port=631, server=host,
                        properties={"txtvers": "1", "ty": "Brother HL-L2350DW series", "rp": "ipp/print",
                                    "pdl": "application/pdf,image/urf"}),  # fmt: skip
            ServiceInfo("_http._tcp.local.", f"{name}._http._tcp.local.", addresses=addr, port=80, server=host),
        ]
    host_label = f"alices-laptop-{index}"
    host = f"{host_label}.local."
    return [
        ServiceInfo("_workstation._tcp.local.", f"{host_label} [{mac}]._workstation._tcp.local.",
                    addresses=addr, port=9, server=host),  # fmt: skip
        ServiceInfo("_ssh._tcp.local.", f"{host_label}._ssh._tcp.local.", addresses=addr, port=22, server=host),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--kind", choices=["printer", "laptop", "loopback-pi", "spoofed-mac", "six-names", "own-address"],
                   required=True)
    p.add_argument("--ip", required=True)
    p.add_argument("--mac", required=True)
    p.add_argument("--index", type=int, default=1)
    p.add_argument("--bridge-ip", default="")
    a = p.parse_args()
    zc = Zeroconf(interfaces=[a.ip])
    infos = services(a.kind, a.ip, a.mac, a.index, a.bridge_ip)
    for info in infos:
        zc.register_service(info, allow_name_change=True)
    print(f"decoy {a.kind} {a.ip} {a.mac}: published {[i.name for i in infos]}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    zc.unregister_all_services()
    zc.close()


if __name__ == "__main__":
    main()
