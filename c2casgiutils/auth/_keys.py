"""Keys of the auth cookies, derived from the configured secrets, and sealing of the GitHub tokens.

- The shared-secret cookie is signed with a key derived from ``C2C__AUTH__SECRET`` by scrypt (mixed with
  ``C2C__AUTH__JWT__SECRET`` when set): changing the secret invalidates every cookie, no JWT setting is
  needed, and the cookie gives no cheap offline test of a guessed secret.
- The GitHub session cookie and the OAuth state cookie are signed with a key derived from
  ``C2C__AUTH__JWT__SECRET``; distinct derivations keep one kind of cookie from passing for another.
- The GitHub access and refresh tokens inside the session cookie are encrypted (AES-GCM, key derived from
  ``C2C__AUTH__JWT__SECRET``), so they never reach the browser in clear and work with any number of
  processes without server-side storage.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os

_SECRET_SALT = b"c2casgiutils/auth/secret-cookie/v1"
_GITHUB_SIGNING_INFO = b"c2casgiutils/auth/github-cookie/v1"
_TOKEN_ENCRYPTION_INFO = b"c2casgiutils/auth/github-token-encryption/v1"
_NONCE_BYTES = 12


class SealError(ValueError):
    """A sealed value is malformed or was not sealed with the current key."""


@functools.lru_cache(maxsize=8)
def _stretch_secret(secret: str) -> bytes:
    # scrypt makes each guess of a weak shared secret expensive; cached so it runs once per secret value.
    return hashlib.scrypt(secret.encode(), salt=_SECRET_SALT, n=2**14, r=8, p=1, dklen=64)


@functools.lru_cache(maxsize=8)
def secret_cookie_key(secret: str, jwt_secret: str | None) -> bytes:
    """Signing key of the shared-secret login cookie (64 bytes, fit for HS256 to HS512)."""
    stretched = _stretch_secret(secret)
    return hmac.new(stretched, (jwt_secret or "").encode(), hashlib.sha512).digest()


@functools.lru_cache(maxsize=8)
def github_cookie_key(jwt_secret: str) -> bytes:
    """Signing key of the GitHub session and OAuth state cookies."""
    return hmac.new(jwt_secret.encode(), _GITHUB_SIGNING_INFO, hashlib.sha512).digest()


def _token_encryption_key(jwt_secret: str) -> bytes:
    return hmac.new(jwt_secret.encode(), _TOKEN_ENCRYPTION_INFO, hashlib.sha256).digest()


def seal(plaintext: str, jwt_secret: str, context: str) -> str:
    """Encrypt and authenticate ``plaintext``; ``context`` (e.g. the login) must match when opening."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415 # checked at start-up

    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(_token_encryption_key(jwt_secret)).encrypt(nonce, plaintext.encode(), context.encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def unseal(sealed: str, jwt_secret: str, context: str) -> str:
    """Decrypt a value from :func:`seal`; raise :class:`SealError` if it was tampered with."""
    from cryptography.exceptions import InvalidTag  # noqa: PLC0415
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    try:
        raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
    except (binascii.Error, ValueError) as error:
        raise SealError("sealed value is not base64") from error
    if len(raw) <= _NONCE_BYTES:
        raise SealError("sealed value is too short")
    try:
        plain = AESGCM(_token_encryption_key(jwt_secret)).decrypt(
            raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode()
        )
    except InvalidTag as error:
        raise SealError("sealed value does not match the key or context") from error
    return plain.decode()


def token_digest(token: str) -> str:
    """A stable, non-reversible key for caches indexed by a token."""
    return hashlib.sha256(token.encode()).hexdigest()
