"""Create the signing key pair once: `python -m services.auth.keygen SIGNING_DIR [PUBLIC_DIR]`.

docker compose runs this as a one-shot service. The private key stays in SIGNING_DIR (mounted
only into auth); the public keys are copied to PUBLIC_DIR for the verifiers, which never see
the private key. Running it again keeps the existing keys.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from services.common.keys import ensure_keypair, load_public_files, thumbprint


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    signing = Path(argv[0])
    ensure_keypair(signing)
    if len(argv) == 2:
        public = Path(argv[1])
        public.mkdir(parents=True, exist_ok=True)
        for source in sorted(signing.glob("public*.pem")):
            shutil.copyfile(source, public / source.name)
    keys = load_public_files(str(p) for p in sorted(signing.glob("public*.pem")))
    for key in keys.values():
        print(f"kid {thumbprint(key)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
