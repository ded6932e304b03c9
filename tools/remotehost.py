"""A deploy host the runner does not share: a second Docker engine in its own network namespace.

    python tools/remotehost.py start --state DIR [--forward PORT ...]   # prints the host as JSON
    python tools/remotehost.py stop --state DIR

`start` creates (idempotently; a half-made host from an earlier failure is torn down first):
- a network namespace with a veth pair addressed from 198.18.0.0/24 (a /30 per host; that range is
  set aside for network testing: traffic goes only to this host and to loopback);
- a dockerd inside it (`nsenter --net=`, not `ip netns exec`, which remounts /sys and breaks the
  engine's cgroups), with its own data root, exec root, pid file and unix socket, no bridge and no
  iptables, a label naming the host, and a TCP listener with mutual TLS (a CA, a server certificate
  for the namespace address and a client certificate, all made here; DOCKER_CERT_PATH layout);
- an sshd in the namespace (host and client keys made here) whose only command is the target
  engine's `docker system dial-stdio`: an ssh:// client always reaches the TARGET engine, never
  this machine's main one (they share a filesystem);
- for each `--forward PORT` (the test registry): the port on the veth's host end forwards to
  127.0.0.1:PORT, and 127.0.0.1:PORT inside the namespace forwards to the host end, so an image
  named 127.0.0.1:PORT/... is pulled by the same name on both engines, as a real registry's name
  resolves everywhere.
`stop` removes the containers, stops the engine, sshd and forwarders, unmounts what the engine
mounted, deletes the namespace and the veth, and removes the state. Both need root.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SUBNET_PREFIX = "198.18.0."
LABEL = "io.modelci.testhost"
TLS_PORT = 2376


def _run(*args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


def _kill_pidfile(path: Path, sig: int = signal.SIGTERM, wait: float = 20.0) -> None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.time() + wait
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        path.unlink()


def _free_slot() -> int:
    used = _run("ip", "-o", "addr").stdout
    for k in range(1, 63):
        if f"{SUBNET_PREFIX}{4 * k + 1}/" not in used and f"{SUBNET_PREFIX}{4 * k + 2}/" not in used:
            return k
    raise RuntimeError("no free /30 left in 198.18.0.0/24")


class RemoteHost:
    def __init__(self, state: Path, forwards: list[int] | tuple[int, ...] = (), owner_pid: int | None = None):
        self.state = Path(state).resolve()
        self.forwards = list(forwards)
        self.owner_pid = owner_pid  # a test session: its host is reaped by the next start if it died
        self.info: dict[str, Any] = {}
        meta = self.state / "host.json"
        if meta.exists():
            self.info = json.loads(meta.read_text())

    # -- addresses and client settings -------------------------------------------------------------
    @property
    def address(self) -> str:
        return str(self.info["ns_addr"])

    @property
    def socket(self) -> str:
        return str(self.info["socket"])

    def tcp_env(self) -> dict[str, str]:
        return {"DOCKER_HOST": f"tcp://{self.address}:{TLS_PORT}", "DOCKER_TLS_VERIFY": "1",
                "DOCKER_CERT_PATH": str(self.state / "client")}

    def ssh_env(self) -> dict[str, str]:
        """DOCKER_HOST=ssh://root@ADDR and the files an ssh client needs (a private key and the
        host's key in known_hosts) handed over as paths, the way protected file variables are."""
        return {"DOCKER_HOST": f"ssh://root@{self.address}",
                "MODELCI_DEPLOY_SSH_KEY": str(self.state / "ssh" / "client_key"),
                "MODELCI_DEPLOY_SSH_KNOWN_HOSTS": str(self.state / "ssh" / "known_hosts")}

    def unix_env(self) -> dict[str, str]:
        return {"DOCKER_HOST": f"unix://{self.socket}"}

    def client(self) -> Any:
        import docker

        return docker.DockerClient(base_url=f"unix://{self.socket}", timeout=120)

    # -- start -------------------------------------------------------------------------------------
    def start(self) -> RemoteHost:
        if self.info and self._engine_answers():
            return self
        self.stop()  # whatever a failed earlier start left behind
        reap_orphans()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        tag = secrets.token_hex(3)
        k = _free_slot()
        self.state.mkdir(parents=True, exist_ok=True)
        run_dir = Path(f"/run/mcirh-{tag}")  # short: unix socket paths are limited to 108 bytes
        self.info = {
            "netns": f"mcirh-{tag}", "veth_host": f"mcih{tag}", "veth_ns": f"mcin{tag}",
            "host_addr": f"{SUBNET_PREFIX}{4 * k + 1}", "ns_addr": f"{SUBNET_PREFIX}{4 * k + 2}",
            "run_dir": str(run_dir), "socket": str(run_dir / "docker.sock"), "name": f"mcirh-{tag}",
            "forwards": self.forwards, "state": str(self.state), "owner_pid": self.owner_pid,
        }
        (self.state / "host.json").write_text(json.dumps(self.info, indent=1))
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "host.json").write_text(json.dumps(self.info, indent=1))
        self._make_tls()
        self._make_ssh_keys()
        i = self.info
        _run("ip", "netns", "add", i["netns"])
        _run("ip", "link", "add", i["veth_host"], "type", "veth", "peer", "name", i["veth_ns"])
        _run("ip", "link", "set", i["veth_ns"], "netns", i["netns"])
        _run("ip", "addr", "add", f"{i['host_addr']}/30", "dev", i["veth_host"])
        _run("ip", "link", "set", i["veth_host"], "up")
        _run("ip", "-n", i["netns"], "link", "set", "lo", "up")
        _run("ip", "-n", i["netns"], "addr", "add", f"{i['ns_addr']}/30", "dev", i["veth_ns"])
        _run("ip", "-n", i["netns"], "link", "set", i["veth_ns"], "up")
        for port in self.forwards:
            self._spawn(f"fwd-host-{port}", [sys.executable, __file__, "forward",
                                             f"{i['host_addr']}:{port}", f"127.0.0.1:{port}"])
            self._spawn(f"fwd-ns-{port}", [*self._nsenter(), sys.executable, __file__, "forward",
                                           f"127.0.0.1:{port}", f"{i['host_addr']}:{port}"])
        self.start_engine()
        self._start_sshd()

    def _nsenter(self) -> list[str]:
        return ["nsenter", f"--net=/var/run/netns/{self.info['netns']}"]

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.state / f"{name}.log", "ab")
        proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        (self.state / f"{name}.pid").write_text(str(proc.pid))

    def start_engine(self) -> None:
        i, tls = self.info, self.state / "tls"
        (self.state / "daemon.json").write_text("{}\n")
        self._spawn("dockerd", [
            *self._nsenter(), "dockerd", "--config-file", str(self.state / "daemon.json"),
            "--data-root", str(self.state / "data"), "--exec-root", f"{i['run_dir']}/exec",
            "--pidfile", f"{i['run_dir']}/docker.pid", "-H", f"unix://{i['socket']}",
            "-H", f"tcp://{i['ns_addr']}:{TLS_PORT}", "--tlsverify", f"--tlscacert={tls / 'ca.pem'}",
            f"--tlscert={tls / 'server-cert.pem'}", f"--tlskey={tls / 'server-key.pem'}",
            "--bridge=none", "--iptables=false", "--ip-masq=false", "--label", f"{LABEL}={i['name']}"])
        deadline = time.time() + 60
        while time.time() < deadline:
            if self._engine_answers():
                return
            time.sleep(0.3)
        raise RuntimeError(f"the target dockerd did not start; see {self.state / 'dockerd.log'}")

    def stop_engine(self) -> None:
        """Stop the target engine (as a host reboot would; its containers stop with it)."""
        _kill_pidfile(Path(self.info["run_dir"]) / "docker.pid", wait=40)
        _kill_pidfile(self.state / "dockerd.pid", wait=5)

    def restart_engine(self) -> None:
        self.stop_engine()
        self.start_engine()

    def _engine_answers(self) -> bool:
        try:
            labels = self.client().info().get("Labels") or []
        except Exception:  # noqa: BLE001 - not up (yet)
            return False
        return f"{LABEL}={self.info['name']}" in labels

    def _make_tls(self) -> None:
        tls, client = self.state / "tls", self.state / "client"
        tls.mkdir(exist_ok=True)
        client.mkdir(exist_ok=True)
        addr = self.info["ns_addr"]

        def ossl(*args: str) -> None:
            _run("openssl", *args, cwd=tls)

        ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", "/CN=modelci test CA")
        for who, subj, ext in (
                ("server", f"/CN={addr}", f"subjectAltName=IP:{addr}\nextendedKeyUsage=serverAuth\n"),
                ("client", "/CN=modelci deploy", "extendedKeyUsage=clientAuth\n")):
            ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", f"{who}-key.pem", "-out", f"{who}.csr", "-subj", subj)
            (tls / f"{who}.ext").write_text(ext)
            ossl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                 "-CAcreateserial", "-days", "2", "-extfile", f"{who}.ext", "-out", f"{who}-cert.pem")
        for src, dst in (("ca.pem", "ca.pem"), ("client-cert.pem", "cert.pem"), ("client-key.pem", "key.pem")):
            (client / dst).write_bytes((tls / src).read_bytes())
            (client / dst).chmod(0o600)

    def _make_ssh_keys(self) -> None:
        ssh = self.state / "ssh"
        ssh.mkdir(exist_ok=True)
        for name in ("host_key", "client_key"):
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"modelci-{name}", "-f", str(ssh / name))
        (ssh / "authorized_keys").write_text((ssh / "client_key.pub").read_text())
        host_pub = (ssh / "host_key.pub").read_text().split()
        (ssh / "known_hosts").write_text(f"{self.info['ns_addr']} {host_pub[0]} {host_pub[1]}\n")

    def _start_sshd(self) -> None:
        ssh, i = self.state / "ssh", self.info
        Path("/run/sshd").mkdir(exist_ok=True)
        cfg = ssh / "sshd_config"
        cfg.write_text(
            f"Port 22\nListenAddress {i['ns_addr']}\nHostKey {ssh / 'host_key'}\n"
            f"PidFile {ssh / 'sshd.pid'}\nAuthorizedKeysFile {ssh / 'authorized_keys'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "PermitRootLogin prohibit-password\nAllowUsers root\nAllowTcpForwarding no\nX11Forwarding no\n"
            "PermitTTY no\n"
            # the only thing this key can do: talk to the target engine (never the main one)
            f"SetEnv DOCKER_HOST=unix://{i['socket']}\n"
            f"ForceCommand /usr/bin/docker -H unix://{i['socket']} system dial-stdio\n")
        _run(*self._nsenter(), "/usr/sbin/sshd", "-f", str(cfg))
        deadline = time.time() + 10
        while not (ssh / "sshd.pid").exists():
            if time.time() > deadline:
                raise RuntimeError("sshd did not start in the namespace")
            time.sleep(0.1)

    # -- stop --------------------------------------------------------------------------------------
    def stop(self) -> None:
        i = self.info
        if not i:
            return
        if Path(i["socket"]).exists():
            with contextlib.suppress(Exception):
                client = self.client()
                for ctr in client.containers.list(all=True):
                    with contextlib.suppress(Exception):
                        ctr.remove(force=True)
        _kill_pidfile(self.state / "ssh" / "sshd.pid")
        self.stop_engine()
        for pidfile in self.state.glob("fwd-*.pid"):
            _kill_pidfile(pidfile, wait=5)
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for m in reversed(mounts):
            if m.startswith((i["run_dir"] + "/", str(self.state) + "/")):
                _run("umount", "-l", m, check=False)
        _run("ip", "netns", "del", i["netns"], check=False)
        _run("ip", "link", "del", i["veth_host"], check=False)
        _run("rm", "-rf", i["run_dir"], str(self.state), check=False)
        self.info = {}


def reap_orphans() -> None:
    """Tear down hosts of test sessions that died without their teardown (SIGKILL)."""
    for meta in Path("/run").glob("mcirh-*/host.json"):
        with contextlib.suppress(Exception):
            info = json.loads(meta.read_text())
            pid = info.get("owner_pid")
            if not pid:
                continue
            try:
                os.kill(int(pid), 0)
                continue
            except ProcessLookupError:
                pass
            host = RemoteHost(Path(info["state"]))
            host.info = info
            Path(info["state"]).mkdir(parents=True, exist_ok=True)
            host.stop()


# -- a tiny TCP forwarder (the machine has no socat) -----------------------------------------------
async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _forward(listen: str, target: str) -> None:
    thost, tport = target.rsplit(":", 1)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            r2, w2 = await asyncio.open_connection(thost, int(tport))
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, w2), _pipe(r2, writer))

    lhost, lport = listen.rsplit(":", 1)
    server = await asyncio.start_server(handle, lhost, int(lport), reuse_address=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start")
    s.add_argument("--state", required=True, type=Path)
    s.add_argument("--forward", type=int, action="append", default=[])
    t = sub.add_parser("stop")
    t.add_argument("--state", required=True, type=Path)
    f = sub.add_parser("forward")
    f.add_argument("listen")
    f.add_argument("target")
    args = p.parse_args(argv)
    if args.cmd == "forward":
        asyncio.run(_forward(args.listen, args.target))
        return 0
    host = RemoteHost(args.state, args.forward if args.cmd == "start" else ())
    if args.cmd == "start":
        host.start()
        print(json.dumps({**host.info, "tcp": host.tcp_env(), "ssh": host.ssh_env()}, indent=1))
    else:
        host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
