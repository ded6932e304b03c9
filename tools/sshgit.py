"""A local SSH git server on a loopback port, so that a second repository can `include:` this one's
components the way GitLab users do. gitlab-ci-local fetches a remote `include: component:` or
`include: project:` with `git archive --remote=ssh://git@HOST:PORT/<group>/<project>.git REF FILE`,
HOST:PORT taken from the including repo's `origin`; this server answers those requests.

  - OpenSSH's sshd on 127.0.0.1:<free port>, started in the foreground (`-D`) with its own config,
    host key and pid file in a temporary directory; stopped by its own pid.
  - Logins as the `git` account only, by public key only (a client key made with ssh-keygen); the
    account is created (no password, not locked, no home) when it does not exist.
  - A ForceCommand allows only git-upload-archive, git-upload-pack and git-receive-pack, and maps
    the absolute path git asks for (`/group/project.git`) under the server's repository directory.

    server = SSHGitServer(Path("/tmp/somewhere")).start()
    server.create_repo("modelci/modelci")          # bare repo
    server.push(work_repo, "modelci/modelci", "main", "0.1.0")
    env = {"GIT_SSH_COMMAND": server.ssh_command}   # for git / gitlab-ci-local
    server.url("group/consumer")                    # ssh://git@127.0.0.1:PORT/group/consumer.git
    server.stop()

Run as root (sshd must be able to switch to the git account). `python tools/sshgit.py DIR` serves
until interrupted (prints the port and the GIT_SSH_COMMAND to use).
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
FORCE_COMMAND = r"""#!/bin/sh
# Only git transport commands, on repositories under REPOS; the path is the one git sends.
set -f
cmd=${SSH_ORIGINAL_COMMAND%% *}
path=${SSH_ORIGINAL_COMMAND#* }
path=${path#\'}
path=${path%\'}
case "$cmd" in
  git-upload-archive|git-upload-pack|git-receive-pack) ;;
  *) echo "sshgit: only git fetch/push/archive are allowed" >&2; exit 1 ;;
esac
case "$path" in
  *..*|"") echo "sshgit: bad repository path" >&2; exit 1 ;;
esac
exec "$cmd" "@REPOS@/${path#/}"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_git_user(name: str = "git") -> pwd.struct_passwd:
    """The account sshd logs in as. Created when missing: a system account with /bin/sh (sshd runs
    the ForceCommand through the login shell) and the password field `*` (no password login, and
    not `!`: with UsePAM no, sshd refuses a locked account even for key logins)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise RuntimeError(f"sshgit: no '{name}' account and not root; create it: "
                           f"useradd --system --shell /bin/sh --no-create-home {name}")
    subprocess.run(["useradd", "--system", "--shell", "/bin/sh", "--no-create-home",
                    "--home-dir", "/", name], check=True, capture_output=True)
    subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)
    return pwd.getpwnam(name)


class SSHGitServer:
    def __init__(self, root: Path | None = None, port: int | None = None, user: str = "git"):
        # sshd reads authorized_keys and the ForceCommand as the git account: the directory must be
        # reachable by it, so it lives in a fresh world-traversable directory (not a 0700 test dir).
        self._own_root = root is None
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="modelci-sshgit-"))
        self.port = port or _free_port()
        self.user = user
        self.repos = self.root / "repos"
        self.key = self.root / "client_ed25519"
        self.proc: subprocess.Popen | None = None

    # -- client side ---------------------------------------------------------------------------
    @property
    def ssh_command(self) -> str:
        return (f"ssh -i {self.key} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no "
                f"-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes")

    def env(self) -> dict[str, str]:
        return {**os.environ, "GIT_SSH_COMMAND": self.ssh_command}

    def url(self, project_path: str) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}/{project_path}.git"

    # -- server side ---------------------------------------------------------------------------
    def start(self) -> SSHGitServer:
        account = ensure_git_user(self.user)
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.repos.mkdir(exist_ok=True)
        os.chown(self.repos, account.pw_uid, account.pw_gid)
        host_key = self.root / "ssh_host_ed25519_key"
        for path in (host_key, self.key):
            if not path.exists():
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "modelci-sshgit",
                                "-f", str(path)], check=True)
        auth = self.root / "authorized_keys"
        auth.write_text(Path(f"{self.key}.pub").read_text())
        auth.chmod(0o644)
        force = self.root / "git-only.sh"
        force.write_text(FORCE_COMMAND.replace("@REPOS@", str(self.repos)))
        force.chmod(0o755)
        cfg = self.root / "sshd_config"
        cfg.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
            f"PidFile {self.root / 'sshd.pid'}", f"AuthorizedKeysFile {auth}", f"AllowUsers {self.user}",
            f"ForceCommand {force}", "PubkeyAuthentication yes", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", "PermitRootLogin no",
            "PermitTTY no", "AllowTcpForwarding no", "AllowAgentForwarding no", "X11Forwarding no",
            "PrintMotd no", "LogLevel VERBOSE", ""]))
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation directory
        log = open(self.root / "sshd.log", "ab")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stdout=log, stderr=log,
                                     start_new_session=True)
        for _ in range(100):
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd on 127.0.0.1:{self.port} did not answer; see {self.root / 'sshd.log'}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def create_repo(self, project_path: str) -> Path:
        """An empty bare repository served as ssh://git@127.0.0.1:PORT/<project_path>.git, created as
        the git account (so git's ownership checks pass when the server side opens it)."""
        path = self.repos / f"{project_path}.git"
        as_user = ["runuser", "-u", self.user, "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_user, "git", "init", "-q", "--bare", "-b", "main", str(path)], check=True,
                       capture_output=True, cwd="/")
        return path

    def push(self, work_repo: Path, project_path: str, *refs: str) -> None:
        """Push refs (branches, tags) of a local repo to one of this server's repos, over SSH."""
        subprocess.run(["git", "-C", str(work_repo), "push", "-q", self.url(project_path), *refs],
                       check=True, capture_output=True, env=self.env())


if __name__ == "__main__":
    server = SSHGitServer(Path(sys.argv[1]) if len(sys.argv) > 1 else None).start()
    print(f"serving {server.repos} on 127.0.0.1:{server.port}\nGIT_SSH_COMMAND='{server.ssh_command}'",
          flush=True)
    try:
        server.proc.wait()  # type: ignore[union-attr]
    except KeyboardInterrupt:
        server.stop()
