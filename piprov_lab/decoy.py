"""A non-Pi host on the lab LAN that advertises itself over mDNS.

Run by the lab inside the decoy's own network namespace (``ip netns exec``):
``python -m piprov_lab.decoy --kind printer|laptop --ip IP --mac MAC``. It
publishes what such a device publishes, so discovery has to tell Pis from
the rest by more than "it answers mDNS":

- printer: ``_ipp._tcp`` and ``_http._tcp`` (a network printer's web page);
- laptop: ``_workstation._tcp`` (name carries its MAC, as avahi does) and
  ``_ssh._tcp``, i.e. exactly the services a Pi publishes, but a non-Pi MAC
  and another host name.
"""

from __future__ import annotations

import argparse
import signal
import socket
import threading

from zeroconf import ServiceInfo, Zeroconf


def services(kind: str, ip: str, mac: str, index: int) -> list[ServiceInfo]:
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
    p.add_argument("--kind", choices=["printer", "laptop"], required=True)
    p.add_argument("--ip", required=True)
    p.add_argument("--mac", required=True)
    p.add_argument("--index", type=int, default=1)
    a = p.parse_args()
    zc = Zeroconf(interfaces=[a.ip])
    infos = services(a.kind, a.ip, a.mac, a.index)
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
