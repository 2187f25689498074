"""A real Postfix (and Dovecot for SASL) started by the tests, on free loopback ports, from a private config.

Nothing here touches the system's mail services: one temporary directory holds Postfix's main.cf/master.cf,
its queue and data directories, the maildir Postfix delivers into, Dovecot's configuration and sockets, and
the TLS key and certificate issued by a test CA (trustme). `master` and `dovecot` run in the foreground as
children of the test process and are stopped by their process ids.

Listeners (one Postfix instance, one `smtpd` per port, each with its own `-o` overrides):

* ``plain``: STARTTLS offered (not required), no AUTH needed, recipient access map (a 4xx and a 5xx address).
* ``submission``: STARTTLS required (``530 5.7.0 Must issue a STARTTLS command first``), SASL AUTH through
  Dovecot, relaying only when signed in, and senders owned by their login (``reject_sender_login_mismatch``).
* ``smtps``: implicit TLS (``smtpd_tls_wrappermode``), otherwise as ``submission``.
* ``helo``: ``reject_non_fqdn_helo_hostname`` (``504 5.5.2 <localhost>: Helo command rejected``).
* ``ratelimit``: ``smtpd_client_message_rate_limit`` = `RATE_LIMIT` messages per minute per client.
* ``idle``: ``smtpd_timeout`` = `IDLE_TIMEOUT` seconds (``421 4.4.2 ... Error: timeout exceeded``, then close).
* ``blocked``: the client is refused at connect (``smtpd_delay_reject = no``): a 554 greeting.

With `oauth2=True` Dovecot also takes `AUTH XOAUTH2` / `OAUTHBEARER` through its `oauth2` passdb, validating JWTs
locally (`introspection_mode = local`): signature with a key given to `trust_jwt_key()`, `exp`/`nbf`/`iat`, and
the claim `OAUTH2_USERNAME_CLAIM` equal to the user signing in.

Postfix delivers every accepted recipient of the ``example.com`` / ``example.org`` domains into one maildir
(virtual delivery, one file per recipient, with ``X-Original-To`` naming the envelope recipient); `messages()`
parses it with the standard library's email parser. `sink()` runs Postfix's `smtp-sink` with fault options.
Everything is skipped (with the reason) when the binaries are missing or the tests do not run as root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_string, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme

POSTFIX_MASTER = "/usr/lib/postfix/sbin/master"
BINARIES = {"postfix": "/usr/sbin/postfix", "postfix master": POSTFIX_MASTER, "dovecot": "/usr/sbin/dovecot",
            "smtp-sink": "/usr/sbin/smtp-sink"}
APT_PACKAGES = "postfix dovecot-core"
RATE_LIMIT = 2  # messages per minute per client on the ``ratelimit`` listener
IDLE_TIMEOUT = 2  # seconds on the ``idle`` listener
USER = "batch@example.com"
PASSWORD = "correct horse battery staple"
DOMAINS = ("example.com", "example.org")
TEMPFAIL = "busy@example.com"  # 450 4.2.1 at RCPT
PERMFAIL = "gone@example.com"  # 550 5.1.1 at RCPT
SERVER_NAME = "mx.outbox.test"
LISTENERS = ("plain", "submission", "smtps", "helo", "ratelimit", "idle", "blocked")
OAUTH2_USERNAME_CLAIM = "email"


def missing() -> str | None:
    """Why the real-MTA fixtures cannot run here, or None."""
    absent = [name for name, path in BINARIES.items() if not os.access(path, os.X_OK)]
    if absent:
        return (f"real-MTA tests need {', '.join(absent)} (Debian packages: {APT_PACKAGES}; .ci/run installs "
                "them with apt-get)")
    if os.geteuid() != 0:
        return "real-MTA tests start Postfix and Dovecot and must run as root (as CI does)"
    try:
        pwd.getpwnam("postfix")
        pwd.getpwnam("dovecot")
        pwd.getpwnam("dovenull")
    except KeyError as exc:
        return f"real-MTA tests need the system user {exc} that the Debian packages create"
    return None


def skip_if_missing() -> None:
    """Skip with the reason, or fail when OUTBOX_REQUIRE_MTA is set (CI sets it: there they must run)."""
    reason = missing()
    if reason:
        if os.environ.get("OUTBOX_REQUIRE_MTA"):
            pytest.fail(f"OUTBOX_REQUIRE_MTA is set but {reason}")
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s: {_tail(log)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path.name})"


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@dataclass
class Delivered:
    """One file Postfix wrote into the maildir (one per accepted recipient)."""

    path: Path
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        # Headers may carry raw UTF-8 (SMTPUTF8 addresses, RFC 6532), which the bytes parser leaves undecoded.
        return message_from_string(self.raw.decode("utf-8"), policy=policy.default)

    @property
    def recipient(self) -> str:
        return str(self.message["X-Original-To"])


class Postfix:
    """One Postfix instance (seven listeners) and one Dovecot auth service; see the module docstring."""

    def __init__(self, root: Path, *, oauth2: bool = False) -> None:
        self.root = root
        self.oauth2 = oauth2
        self.jwt_keys = root / "dovecot" / "jwt-keys"
        self.ca = trustme.CA()
        self.ports = {name: free_port() for name in LISTENERS}
        self.ca_file = str(root / "ca.pem")
        self.maildir = root / "mail" / "all"
        self.log = root / "maillog"
        self.dovecot_log = root / "dovecot.log"
        self._master: subprocess.Popen[bytes] | None = None
        self._dovecot: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ configuration
    def _write_config(self) -> None:
        r = self.root
        etc, queue = r / "etc", r / "queue"
        for d in (etc, queue, r / "data", r / "mail", r / "dovecot" / "run", r / "dovecot" / "state"):
            d.mkdir(parents=True, exist_ok=True)
        nobody = pwd.getpwnam("nobody")
        os.chown(r / "mail", nobody.pw_uid, nobody.pw_gid)
        os.chown(r / "data", pwd.getpwnam("postfix").pw_uid, 0)
        self.ca.cert_pem.write_to_path(self.ca_file)
        cert = self.ca.issue_cert("127.0.0.1", "localhost", SERVER_NAME)
        cert.private_key_and_cert_chain_pem.write_to_path(str(etc / "server.pem"))
        (etc / "server.pem").chmod(0o600)
        (etc / "recipient_access").write_text(
            f"{TEMPFAIL} 450 4.2.1 Mailbox busy, try again later\n"
            f"{PERMFAIL} 550 5.1.1 Mailbox does not exist\n")
        (etc / "sender_logins").write_text(f"{USER} {USER}\n")
        (etc / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {r / "data"}
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = {SERVER_NAME}
mydomain = outbox.test
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file = {self.log}
maillog_file_prefixes = {r}
biff = no
smtputf8_enable = yes
message_size_limit = 10240000
virtual_mailbox_domains = {" ".join(DOMAINS)}
virtual_mailbox_base = {r / "mail"}
virtual_mailbox_maps = static:all/
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
smtpd_tls_chain_files = {etc / "server.pem"}
smtpd_tls_security_level = may
smtpd_tls_received_header = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_auth_enable = no
smtpd_recipient_restrictions = check_recipient_access texthash:{etc / "recipient_access"}
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_sender_login_maps = texthash:{etc / "sender_logins"}
smtpd_client_event_limit_exceptions = $mynetworks
""")
        p = self.ports
        auth = ("-o smtpd_sasl_auth_enable=yes -o smtpd_tls_auth_only=yes "
                "-o smtpd_relay_restrictions=permit_sasl_authenticated,reject "
                "-o smtpd_sender_restrictions=reject_sender_login_mismatch")
        listeners = {
            "plain": "",
            "submission": f"-o smtpd_tls_security_level=encrypt {auth}",
            "smtps": f"-o smtpd_tls_wrappermode=yes {auth}",
            "helo": "-o smtpd_helo_required=yes -o smtpd_helo_restrictions=reject_non_fqdn_helo_hostname",
            "ratelimit": f"-o smtpd_client_message_rate_limit={RATE_LIMIT} -o smtpd_client_event_limit_exceptions=",
            "idle": f"-o smtpd_timeout={IDLE_TIMEOUT}s",
            "blocked": "-o smtpd_delay_reject=no -o smtpd_client_restrictions=reject",
        }
        inet = "\n".join(f"127.0.0.1:{p[name]} inet n - n - - smtpd -o syslog_name=postfix/{name} {opts}"
                         for name, opts in listeners.items())
        # The internal services of Debian's master.cf, none chrooted (the chroot would need copies of system files).
        (etc / "master.cf").write_text(inet + """
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
""")
        dv = r / "dovecot"
        (dv / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        mechanisms = "plain login"
        oauth2_passdb = ""
        if self.oauth2:
            mechanisms = "plain login xoauth2 oauthbearer"
            self.jwt_keys.mkdir(parents=True, exist_ok=True)
            (dv / "oauth2.conf.ext").write_text(f"""\
introspection_mode = local
local_validation_key_dict = fs:posix:prefix={self.jwt_keys}/
username_attribute = {OAUTH2_USERNAME_CLAIM}
username_format = %Lu
""")
            oauth2_passdb = f"""
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {dv / "oauth2.conf.ext"}
}}"""
        (dv / "dovecot.conf").write_text(f"""\
protocols =
base_dir = {dv / "run"}
state_dir = {dv / "state"}
log_path = {self.dovecot_log}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {dv / "users"}
}}{oauth2_passdb}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={dv}/home/%u
}}
service auth {{
  unix_listener {queue}/private/auth {{
    mode = 0666
  }}
}}
service anvil {{
  chroot =
}}
""")

    def trust_jwt_key(self, kid: str, public_key_pem: bytes, alg: str = "RS256", azp: str = "default") -> None:
        """Let Dovecot accept JWTs signed with this key (its local validation dict: <azp>/<alg>/<kid>)."""
        directory = self.jwt_keys / azp / alg
        directory.mkdir(parents=True, exist_ok=True)
        (directory / kid).write_bytes(public_key_pem)
        for d in (self.jwt_keys, self.jwt_keys / azp, directory):
            d.chmod(0o755)
        (directory / kid).chmod(0o644)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        self._write_config()
        etc = str(self.root / "etc")
        env = {**os.environ, "MAIL_CONFIG": etc}
        # Creates the queue's subdirectories with Postfix's ownership and modes (no daemon is started).
        chk = subprocess.run(["/usr/sbin/postfix", "-c", etc, "check"], env=env, capture_output=True)
        if chk.returncode:
            raise RuntimeError(f"postfix check failed: {chk.stderr.decode(errors='replace')}")
        with open(self.dovecot_log, "ab") as early_errors:  # before it opens its log_path
            self._dovecot = subprocess.Popen(
                ["/usr/sbin/dovecot", "-F", "-c", str(self.root / "dovecot" / "dovecot.conf")],
                stdout=subprocess.DEVNULL, stderr=early_errors)
        self._master = subprocess.Popen([POSTFIX_MASTER, "-c", etc, "-d"], env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)  # Postfix logs to maillog_file
        for name, port in self.ports.items():
            _wait_port(port, self._master, f"postfix ({name})", self.log)
        deadline = time.monotonic() + 10
        while not (self.root / "queue" / "private" / "auth").exists():
            if self._dovecot.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dovecot did not start: {_tail(self.dovecot_log)}")
            time.sleep(0.05)

    def stop(self) -> None:
        _stop(self._master)
        _stop(self._dovecot)

    # ------------------------------------------------------------------ what Postfix delivered
    def delivered(self) -> list[Delivered]:
        new = self.maildir / "new"
        if not new.is_dir():
            return []
        return [Delivered(p, p.read_bytes()) for p in sorted(new.iterdir(), key=lambda p: p.stat().st_mtime)]

    def wait_delivered(self, subject: str, count: int = 1, timeout: float = 15.0) -> list[Delivered]:
        """The `count` deliveries (one per recipient) of the message with this subject, once all have arrived."""
        deadline = time.monotonic() + timeout
        while True:
            found = [d for d in self.delivered() if d.message["Subject"] == subject]
            if len(found) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(found) == count, (f"expected {count} deliveries of {subject!r}, found {len(found)}; "
                                     f"log:\n{_tail(self.log)}")
        return found

    def wait_log(self, pattern: str, after: int = 0, timeout: float = 10.0) -> str:
        """The first log line matching the regex `pattern` past character offset `after` (Postfix logs through
        postlogd, a moment after the fact)."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(f"^.*{pattern}.*$", self.log_text()[after:], re.MULTILINE)
            if m:
                return m.group(0)
            assert time.monotonic() < deadline, f"no log line matching {pattern!r}:\n{_tail(self.log)}"
            time.sleep(0.05)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Sink:
    """Postfix's `smtp-sink` on a free port, with fault options (see smtp-sink(1)): for faults Postfix proper
    cannot be made to produce on demand (disconnect after a given command, 550 right after 354)."""

    def __init__(self, root: Path, *options: str) -> None:
        self.port = free_port()
        self.dump = root / f"sink-{self.port}"
        self.dump.mkdir()
        nobody = pwd.getpwnam("nobody")
        os.chown(self.dump, nobody.pw_uid, nobody.pw_gid)
        self._proc = subprocess.Popen(
            ["/usr/sbin/smtp-sink", "-u", "nobody", "-h", "sink.outbox.test", "-d", f"{self.dump}/%H%M%S.",
             *options, f"127.0.0.1:{self.port}", "16"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, self._proc, "smtp-sink", self.dump)

    def dumps(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.dump.iterdir())]

    def stop(self) -> None:
        _stop(self._proc)


@contextlib.contextmanager
def running_postfix(*, oauth2: bool = False) -> Iterator[Postfix]:
    skip_if_missing()
    root = Path(tempfile.mkdtemp(prefix="outbox-postfix-"))
    root.chmod(0o755)  # Postfix's and Dovecot's unprivileged processes open files below it
    server = Postfix(root, oauth2=oauth2)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def running_sink(*options: str) -> Iterator[Sink]:
    skip_if_missing()
    root = Path(tempfile.mkdtemp(prefix="outbox-sink-"))
    root.chmod(0o755)
    sink = Sink(root, *options)
    try:
        yield sink
    finally:
        sink.stop()
        shutil.rmtree(root, ignore_errors=True)
