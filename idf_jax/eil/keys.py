"""Ed25519 signing keys of the proof ledger: parse, generate, store, fingerprint.

The ledger signs with an Ed25519 private key and anyone holding the matching public key
verifies it offline. A private key is given as

- an ``Ed25519PrivateKey`` (the `cryptography` package),
- PEM text (PKCS#8, unencrypted: what `save_private_key` writes),
- a 32-byte seed, as bytes or as 64 hexadecimal characters,

or read from the environment variable ``IDF_EIL_LEDGER_KEY`` (PEM text or hex seed).
Seeds with fewer than 16 distinct byte values (``"00" * 32``, ``b"k" * 32``) are refused
as placeholders, and so is the public development key unless asked for explicitly.

``DEV_SEED`` is a documented, public seed for tests and demos: a ledger it signs proves
nothing to a third party (``Ledger.is_dev_key`` says so).

Signatures carry a domain tag (``sign(key, "record", data)``), so a record signature is
never valid as a head or anchor signature.
"""

from __future__ import annotations

import hashlib
import os
import string
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .._io import atomic_write_bytes

__all__ = [
    "DEV_SEED",
    "KEY_ENV",
    "PrivateKeyLike",
    "PublicKeyLike",
    "dev_key",
    "fingerprint",
    "generate_key",
    "is_dev_key",
    "load_private_key",
    "load_public_key",
    "private_key_pem",
    "public_key_pem",
    "resolve_signing_key",
    "save_private_key",
    "sign",
    "signature_ok",
]

KEY_ENV = "IDF_EIL_LEDGER_KEY"
DEV_SEED = hashlib.sha256(b"idf-eil-INSECURE-development-key").digest()
_MIN_DISTINCT = 16
_DOMAIN = b"idf-eil-ledger/v2/"

PrivateKeyLike = Ed25519PrivateKey | bytes | str
PublicKeyLike = Ed25519PublicKey | bytes | str | os.PathLike


def dev_key() -> Ed25519PrivateKey:
    """The public development key (tests and demos only)."""
    return Ed25519PrivateKey.from_private_bytes(DEV_SEED)


def generate_key() -> Ed25519PrivateKey:
    """A new random Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def is_dev_key(key: Ed25519PrivateKey | Ed25519PublicKey) -> bool:
    """Whether `key` is (the public half of) the development key."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return _raw_public(pub) == _raw_public(dev_key().public_key())


def fingerprint(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """SHA-256 (hex) of the raw 32-byte public key: names the key in anchors and logs."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return hashlib.sha256(_raw_public(pub)).hexdigest()


def _from_seed(seed: bytes, allow_dev_key: bool) -> Ed25519PrivateKey:
    if seed == DEV_SEED and not allow_dev_key:
        raise ValueError(
            "ledger key is the public development key: it proves nothing to anyone; "
            "use your own key (or allow_dev_key=True / --dev for a development ledger)"
        )
    distinct = len(set(seed))
    if distinct < _MIN_DISTINCT:
        raise ValueError(
            f"ledger key seed has only {distinct} distinct byte values: a placeholder, not a "
            "secret; generate one, e.g. python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    return Ed25519PrivateKey.from_private_bytes(seed)


def load_private_key(key: PrivateKeyLike, *, allow_dev_key: bool = False) -> Ed25519PrivateKey:
    """An Ed25519 private key from one of the forms in the module doc; ValueError naming the
    problem otherwise (a wrong length, a non-Ed25519 PEM, a placeholder seed)."""
    if isinstance(key, Ed25519PrivateKey):
        if is_dev_key(key) and not allow_dev_key:
            raise ValueError("ledger key is the public development key (pass allow_dev_key=True)")
        return key
    if isinstance(key, str):
        text = key.strip()
        if text.startswith("-----BEGIN"):
            key = text.encode()
        elif len(text) == 64 and all(c in string.hexdigits for c in text):
            return _from_seed(bytes.fromhex(text), allow_dev_key)
        else:
            raise ValueError(
                "ledger key must be an Ed25519 private key: PEM text or a 32-byte seed as 64 "
                f"hex characters (got a {len(text)}-character string; HMAC text keys are no "
                "longer used)"
            )
    if not isinstance(key, bytes):
        raise ValueError(f"ledger key must be PEM, a 32-byte seed or a key, got {type(key)!r}")
    if key.lstrip().startswith(b"-----BEGIN"):
        try:
            obj = serialization.load_pem_private_key(key, password=None)
        except (ValueError, TypeError) as e:
            raise ValueError(f"ledger key PEM cannot be read: {e}") from e
        if not isinstance(obj, Ed25519PrivateKey):
            raise ValueError(f"ledger key PEM holds a {type(obj).__name__}, not an Ed25519 key")
        return load_private_key(obj, allow_dev_key=allow_dev_key)
    if len(key) != 32:
        raise ValueError(f"ledger key seed must be 32 bytes, got {len(key)}")
    return _from_seed(key, allow_dev_key)


def resolve_signing_key(
    key: PrivateKeyLike | None, allow_dev_key: bool = False, *, env: dict | None = None
) -> Ed25519PrivateKey:
    """`key`, else ``$IDF_EIL_LEDGER_KEY``, else the development key when `allow_dev_key`;
    ValueError when there is none: there is no silent default."""
    environ = os.environ if env is None else env
    if key is None and environ.get(KEY_ENV):
        key = environ[KEY_ENV]
    if key is None:
        if allow_dev_key:
            return dev_key()
        raise ValueError(
            f"no ledger signing key: pass key=..., set ${KEY_ENV}, or pass "
            "allow_dev_key=True for an insecure development ledger"
        )
    return load_private_key(key, allow_dev_key=allow_dev_key)


def load_public_key(key: PublicKeyLike) -> Ed25519PublicKey:
    """An Ed25519 public key from a key, PEM bytes / text, or the path of a PEM file."""
    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, str) and key.lstrip().startswith("-----BEGIN"):
        data = key.encode()
    elif isinstance(key, bytes) and key.lstrip().startswith(b"-----BEGIN"):
        data = key
    elif isinstance(key, str | os.PathLike):
        path = Path(key)
        if not path.is_file():
            raise FileNotFoundError(f"public key file {str(path)!r} does not exist")
        data = path.read_bytes()
    else:
        raise ValueError(f"public key must be PEM or a PEM file path, got {type(key)!r}")
    try:
        obj = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise ValueError(f"public key PEM cannot be read: {e}") from e
    if not isinstance(obj, Ed25519PublicKey):
        raise ValueError(f"public key PEM holds a {type(obj).__name__}, not an Ed25519 key")
    return obj


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """PKCS#8 PEM of `key` (unencrypted: protect the file, see `save_private_key`)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM of (the public half of) `key`: give it to verifiers."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def save_private_key(key: Ed25519PrivateKey, path: str | os.PathLike) -> Path:
    """Write `key` to `path` (mode 0600, atomically) and its public key next to it
    (``<stem>.pub.pem``, mode 0644); returns the public key's path. The folder is made
    0700 when created here."""
    path = Path(path)
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    atomic_write_bytes(path, private_key_pem(key), mode=0o600)
    pub = path.with_name(path.name.removesuffix(".pem") + ".pub.pem")
    atomic_write_bytes(pub, public_key_pem(key), mode=0o644)
    return pub


def sign(key: Ed25519PrivateKey, domain: str, data: bytes) -> str:
    """Hex Ed25519 signature of `data` under the domain tag `domain`."""
    return key.sign(_DOMAIN + domain.encode() + b":" + data).hex()


def signature_ok(key: Ed25519PublicKey, domain: str, data: bytes, signature: str) -> bool:
    """Whether `signature` (hex) is `key`'s signature of `data` under `domain`."""
    try:
        key.verify(bytes.fromhex(signature), _DOMAIN + domain.encode() + b":" + data)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
