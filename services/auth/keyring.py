"""The signing key and every public key auth publishes (several during a rotation)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from services.common import keys as keylib


@dataclass(frozen=True, slots=True)
class KeyRing:
    signing_key: rsa.RSAPrivateKey
    signing_kid: str
    public: dict[str, rsa.RSAPublicKey]

    @classmethod
    def load(cls, directory: Path) -> KeyRing:
        """Create keys on first start; publish private.pem's key plus any public-*.pem beside it."""
        keylib.ensure_keypair(directory)
        signing = keylib.load_private_pem((directory / "private.pem").read_bytes())
        kid = keylib.thumbprint(signing.public_key())
        extra = sorted(str(p) for p in directory.glob("public-*.pem"))
        public = keylib.load_public_files(extra)
        public[kid] = signing.public_key()
        return cls(signing_key=signing, signing_kid=kid, public=public)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [keylib.to_jwk(key) for key in self.public.values()]}
