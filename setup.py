"""The C extensions; everything else is declared in pyproject.toml.

`sharechain.crypto._sha256x` hashes two SHA-256 streams at once with the x86 SHA
instructions (see `sharechain.crypto.digests`). `sharechain.crypto._tokens` computes
the masking tokens of a whole string column without the interpreter lock (see
`sharechain.privacy.tokens`). `sharechain._cborx` writes the deterministic CBOR of the
ledger's plain values (see `sharechain.codec`). All are optional: without a C compiler or
the Python headers the install goes on, hashing uses hashlib and encoding codec's Python
writer, with the same results. (Declared here rather than under
``[tool.setuptools.ext-modules]``, which setuptools still calls experimental and warns
about at every install.)
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sharechain.crypto._sha256x",
            sources=["src/sharechain/crypto/_sha256x.c"],
            depends=["src/sharechain/crypto/_sha256_tables.h"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
        Extension(
            "sharechain.crypto._tokens",
            sources=["src/sharechain/crypto/_tokens.c"],
            depends=["src/sharechain/crypto/_sha256_tables.h"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
        Extension(
            "sharechain._cborx",
            sources=["src/sharechain/_cborx.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
    ]
)
