"""RSA key helpers: PEM loading, JWK conversion and RFC 7638 thumbprints used as `kid`."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

MIN_RSA_BITS = 2048


class UnusableKey(ValueError):
    """A key file or JWK is unusable (wrong type, too small, malformed)."""


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _uint_from_b64url(text: str) -> int:
    padded = text + "=" * (-len(text) % 4)
    return int.from_bytes(base64.urlsafe_b64decode(padded), "big")


def thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256) of an RSA public key."""
    numbers = public_key.public_numbers()
    canonical = json.dumps(
        {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)},
        separators=(",", ":"),
        sort_keys=True,
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def to_jwk(public_key: rsa.RSAPublicKey) -> dict[str, str]:
    numbers = public_key.public_numbers()
    return {
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": thumbprint(public_key),
        "n": _b64url_uint(numbers.n),
        "e": _b64url_uint(numbers.e),
    }


def _checked(key: object) -> rsa.RSAPublicKey:
    if not isinstance(key, rsa.RSAPublicKey):
        raise UnusableKey("not an RSA public key")
    if key.key_size < MIN_RSA_BITS:
        raise UnusableKey(f"RSA key of {key.key_size} bits is below {MIN_RSA_BITS}")
    return key


def load_public_pem(data: bytes) -> rsa.RSAPublicKey:
    return _checked(serialization.load_pem_public_key(data))


def load_public_files(paths: Iterable[str]) -> dict[str, rsa.RSAPublicKey]:
    keys: dict[str, rsa.RSAPublicKey] = {}
    for path in paths:
        key = load_public_pem(Path(path).read_bytes())
        keys[thumbprint(key)] = key
    return keys


def from_jwk(jwk: Mapping[str, object]) -> rsa.RSAPublicKey:
    if (
        jwk.get("kty") != "RSA"
        or jwk.get("alg", "RS256") != "RS256"
        or jwk.get("use", "sig") != "sig"
    ):
        raise UnusableKey("JWK is not an RS256 signing key")
    n, e = jwk.get("n"), jwk.get("e")
    if not isinstance(n, str) or not isinstance(e, str):
        raise UnusableKey("JWK lacks n or e")
    try:
        key = rsa.RSAPublicNumbers(_uint_from_b64url(e), _uint_from_b64url(n)).public_key()
    except ValueError as exc:
        raise UnusableKey(f"JWK is malformed: {exc}") from None
    return _checked(key)


def parse_jwks(document: object) -> dict[str, rsa.RSAPublicKey]:
    """Keys of a JWK Set by their RFC 7638 thumbprint; unusable entries are skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise UnusableKey("not a JWK Set")
    keys: dict[str, rsa.RSAPublicKey] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict):
            continue
        try:
            key = from_jwk(entry)
        except UnusableKey:
            continue
        keys[thumbprint(key)] = key
    return keys


def generate_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ensure_keypair(directory: Path) -> None:
    """Create keys/private.pem and keys/public.pem once; safe when several processes race."""
    if not directory.is_dir():  # a read-only mount that exists must not be written to
        directory.mkdir(parents=True, exist_ok=True)
    private_path = directory / "private.pem"
    public_path = directory / "public.pem"
    if not private_path.exists():
        key = generate_private_key()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # Write aside, then link into place: link fails if another process got there first,
        # so readers never see a half-written key.
        tmp = directory / f".private.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        try:
            os.link(tmp, private_path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    if not public_path.exists():
        private = load_private_pem(private_path.read_bytes())
        tmp = directory / f".public.{os.getpid()}.tmp"
        tmp.write_bytes(
            private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        tmp.chmod(0o644)
        tmp.replace(public_path)


def load_private_pem(data: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_RSA_BITS:
        raise UnusableKey("signing key must be an RSA private key of 2048 bits or more")
    return key
