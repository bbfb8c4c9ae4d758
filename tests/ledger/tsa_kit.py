"""A throwaway RFC 3161 time-stamping authority made of `openssl` commands (test helper).

The same commands are shown in docs/proofs.md ("Anchoring and timestamps"):
a CA, a TSA certificate with the critical `timeStamping` extended key usage,
an `openssl ts` configuration, and `openssl ts -reply` to answer a query.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

TS_CONFIG = """\
[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
certs = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha1, sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""

TSA_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = critical, timeStamping
"""


def openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


@dataclass(frozen=True)
class Tsa:
    """A TSA in a directory: `ca.pem` (root), `tsa.pem` (signer), `ts.cnf`."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def cert(self) -> Path:
        return self.dir / "tsa.pem"

    def reply(self, query: bytes) -> bytes:
        """`openssl ts -reply`: the DER TimeStampResp to a DER TimeStampReq."""
        (self.dir / "query.tsq").write_bytes(query)
        openssl(
            "ts", "-reply", "-config", "ts.cnf", "-queryfile", "query.tsq",
            "-out", "reply.tsr", cwd=self.dir,
        )  # fmt: skip
        return (self.dir / "reply.tsr").read_bytes()


def make_tsa(path: Path, name: str = "Test") -> Tsa:
    """A fresh CA and TSA (EC P-256 keys, one day) in `path`."""
    path.mkdir(parents=True)
    (path / "ts.cnf").write_text(TS_CONFIG.format(dir=path))
    (path / "tsa.ext").write_text(TSA_EXTENSIONS)
    (path / "serial").write_text("01\n")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        "-subj", f"/CN={name} Root CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=path,
    )  # fmt: skip
    openssl("req", *ec, "-keyout", "tsa.key", "-out", "tsa.csr", "-subj", f"/CN={name} TSA",
            cwd=path)  # fmt: skip
    openssl(
        "x509", "-req", "-in", "tsa.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-set_serial", "2", "-days", "1", "-extfile", "tsa.ext", "-out", "tsa.pem",
        cwd=path,
    )  # fmt: skip
    return Tsa(path)
