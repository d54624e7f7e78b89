"""The auth service: accounts, RS256 access tokens with refresh rotation, JWKS, sessions."""
