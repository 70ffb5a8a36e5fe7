"""A throw-away SoftHSM2 token store for the PKCS#11 tests (Key Connector's `pkcs11` RSA key
provider):

    with SoftHsm() as hsm:
        hsm.init_token("kc", so_pin="1234", pin="5678")
        hsm.import_rsa_key(private_key, "kc-key", "01")
        subprocess.run([...], env=hsm.env)     # SOFTHSM2_CONF points at this token store
        hsm.module                             # /usr/lib/softhsm/libsofthsm2.so

Each SoftHsm has its own token directory and configuration file in a temporary directory,
removed on close(); nothing touches /etc/softhsm or /var/lib/softhsm. softhsm2-util runs
with a bounded timeout and its output is in every error.
"""
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

from cryptography.hazmat.primitives import serialization

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
UTIL = "softhsm2-util"
TIMEOUT_S = 60


class SoftHsmError(RuntimeError):
    """softhsm2-util failed; the message carries its output."""


class SoftHsm:
    """Attributes: dir, tokendir, conf (the SOFTHSM2_CONF file), module, env (os.environ plus
    SOFTHSM2_CONF: pass it as a child's environment), tokens {label: (so_pin, pin)}."""

    module = MODULE

    def __init__(self, parent: str | os.PathLike | None = None, module: str = MODULE,
                 path: str | os.PathLike | None = None):
        """path: this exact directory (made if missing), whose tokens a SoftHsm made on the
        same path before keeps (the harness's per-keyholdd token store); else a fresh
        temporary directory under parent."""
        if not pathlib.Path(module).exists():
            raise SoftHsmError(f"SoftHSM2 module {module} missing (install softhsm2)")
        if shutil.which(UTIL) is None:
            raise SoftHsmError(f"{UTIL} not found (install softhsm2)")
        self.module = module
        if path is not None:
            self.dir = pathlib.Path(path)
            self.dir.mkdir(mode=0o700, exist_ok=True)
        else:
            self.dir = pathlib.Path(tempfile.mkdtemp(prefix="khhsm-", dir=parent))
        self.tokendir = self.dir / "tokens"
        self.tokendir.mkdir(mode=0o700, exist_ok=True)
        self.conf = self.dir / "softhsm2.conf"
        self.conf.write_text(f"directories.tokendir = {self.tokendir}\n"
                             "objectstore.backend = file\n"
                             "log.level = ERROR\n"
                             "slots.removable = false\n"
                             "slots.mechanisms = ALL\n"
                             "library.reset_on_fork = false\n")
        self.env = dict(os.environ)
        self.env["SOFTHSM2_CONF"] = str(self.conf)
        self.tokens: dict[str, tuple[str, str]] = {}
        self._last: str | None = None

    def __enter__(self) -> "SoftHsm":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Removes the token store (idempotent)."""
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def util(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Runs softhsm2-util with this store's SOFTHSM2_CONF; output as text (stdout+stderr
        in .stdout). check=True raises SoftHsmError on a non-zero exit."""
        argv = [UTIL, *[str(a) for a in args]]
        try:
            r = subprocess.run(argv, env=self.env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise SoftHsmError(f"{UTIL} {args[0]} did not finish within {TIMEOUT_S}s") from None
        if check and r.returncode != 0:
            raise SoftHsmError(f"{_redact(argv)} failed with {r.returncode}:\n{r.stdout}")
        return r

    def init_token(self, label: str, so_pin: str = "1234", pin: str = "5678") -> int:
        """Initialises the first free slot as token `label`; returns its slot number (SoftHSM
        renumbers slots: use the label to find the token)."""
        r = self.util("--init-token", "--free", "--label", label, "--so-pin", so_pin,
                      "--pin", pin)
        m = re.search(r"reassigned to slot (\d+)", r.stdout)
        self.tokens[label] = (so_pin, pin)
        self._last = label
        return int(m.group(1)) if m else -1

    def import_rsa_key(self, private_key, label: str, id_hex: str, *, token: str | None = None,
                       pin: str | None = None, public_key: bool = True) -> None:
        """Imports an RSA private key (a cryptography key object, or PEM bytes) as object
        `label` with CKA_ID id_hex into token `token` (default: the last one initialised),
        through a PKCS#8 PEM file removed right after. public_key=False: --no-public-key."""
        token = token if token is not None else self._last
        if token is None:
            raise SoftHsmError("import_rsa_key: no token (call init_token first)")
        if pin is None:
            if token not in self.tokens:
                raise SoftHsmError(f"import_rsa_key: unknown token {token!r}: pass pin=")
            pin = self.tokens[token][1]
        if isinstance(private_key, bytes):
            private_key = serialization.load_pem_private_key(private_key, password=None)
        pem = private_key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        path = self.dir / f"import-{os.getpid()}-{label.encode().hex()[:32]}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
            self.util("--import", path, "--token", token, "--label", label, "--id", id_hex,
                      "--pin", pin, *([] if public_key else ["--no-public-key"]))
        finally:
            path.unlink(missing_ok=True)

    def show_slots(self) -> str:
        """`softhsm2-util --show-slots` output."""
        return self.util("--show-slots").stdout

    def token_labels(self) -> list[str]:
        """Labels of the initialised tokens, as --show-slots reports them."""
        labels = re.findall(r"^\s*Label:\s*(.*?)\s*$", self.show_slots(), re.M)
        return [x for x in labels if x]

    def delete_token(self, label: str) -> None:
        self.util("--delete-token", "--token", label)
        self.tokens.pop(label, None)
        if self._last == label:
            self._last = None


def _redact(argv: list[str]) -> str:
    out, hide = [], False
    for a in argv:
        out.append("***" if hide else a)
        hide = a in ("--pin", "--so-pin", "--file-pin")
    return " ".join(out)
