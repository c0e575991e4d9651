"""Which client-side encryption keys the settings name (``s3_cse_key``, ``s3_cse_old_keys``), read from
their files, KMS or a plug-in: each setting that cannot serve is refused naming it and the file."""

from __future__ import annotations

import base64
import os
import re
import string
from typing import TYPE_CHECKING

from emrml.errors import InvalidInputException
from emrml.storage.cse import AesKeyProvider, KeyProvider, KeyProviders, KmsKeyProvider, RsaKeyProvider

if TYPE_CHECKING:
    from emrml.config import Settings


def provider_from_spec(spec: str, settings: Settings, setting: str = "s3_cse_key") -> KeyProvider:
    """A key provider from ``kind:argument``: ``aes:<key file>``, ``rsa:<PEM file>``, ``kms:<key id>`` or
    ``plugin:<module>:<factory>`` (``factory(settings)`` returns a ``KeyProvider``). A bad value is an
    InvalidInputException naming ``setting`` (where the value came from) and the file."""
    kind, _, argument = spec.strip().partition(":")
    try:
        if kind == "aes":
            return AesKeyProvider(_read_aes_key(argument))
        if kind == "rsa":
            with open(os.path.expanduser(argument), "rb") as file:
                return RsaKeyProvider(file.read())
        if kind == "kms":
            endpoint = settings.kms_endpoint_url
            return KmsKeyProvider(argument, endpoint, settings.s3_region)
        if kind == "plugin":
            return _plugin_provider(argument, settings, setting)
    except OSError as exc:
        shown = "its file (not shown: it reads as key material)" if _key_like(argument) else argument
        raise InvalidInputException(f"setting {setting}: cannot read {shown}: {exc.strerror}") from None
    except ValueError as exc:
        raise InvalidInputException(f"setting {setting}: {argument} {exc}") from None
    # The value itself is not shown: a setting given the key rather than where it is (the base64 of an AES
    # key, a PEM) would have its key material in the message, and in every log that keeps it.
    named = f"kind {kind!r}" if argument and _KIND.fullmatch(kind) else "value (not shown)"
    raise InvalidInputException(
        f"setting {setting}: its {named} is not aes:<file>, rsa:<file>, kms:<key id> or "
        "plugin:<module>:<factory>"
    )


def _key_like(argument: str) -> bool:
    """Whether ``aes:``/``rsa:`` were given what may be the key itself rather than its file (a PEM, an AES
    key's base64): a message naming the file would show it. No path of a key file reads so."""
    if "\n" in argument or "-----BEGIN" in argument:
        return True
    try:
        return len(base64.b64decode(argument, validate=True)) in (16, 24, 32)
    except ValueError:
        return False


#: What may be a mistyped provider kind (``des:``, ``AES:``), shown in the error; anything else may be a key.
_KIND = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,15}")


def _plugin_provider(argument: str, settings: Settings, setting: str) -> KeyProvider:
    """The provider ``factory(settings)`` of ``module:factory`` returns; whatever fails, the user's code
    included, is an error naming the setting and the plug-in (it was an internal error)."""
    import importlib

    module, _, factory = argument.partition(":")
    if not module or not factory:
        raise InvalidInputException(f"setting {setting}: plug-in {argument!r} is not <module>:<factory>")
    try:
        make = getattr(importlib.import_module(module), factory)
    except (ImportError, AttributeError) as exc:
        raise InvalidInputException(f"setting {setting}: cannot load plug-in {argument}: {exc}") from None
    try:
        provider = make(settings)
    except Exception as exc:
        raise InvalidInputException(
            f"setting {setting}: plug-in {argument} failed: {type(exc).__name__}: {exc}"
        ) from None
    missing = [
        name
        for name in ("wrap_algorithms", "key_id", "new_data_key", "unwrap")
        if not hasattr(provider, name)
    ]
    if missing:
        raise InvalidInputException(
            f"setting {setting}: plug-in {argument} returned a {type(provider).__name__}, not a key provider "
            f"(it lacks {', '.join(missing)}; see emrml.storage.cse.KeyProvider)"
        )
    return provider  # type: ignore[no-any-return]


def _read_aes_key(path: str) -> bytes:
    """The key a file holds, raw or in base64; ValueError, saying what is wrong, otherwise."""
    with open(os.path.expanduser(path), "rb") as file:
        data = file.read()
    # A key in hexadecimal (``openssl rand -hex 16``) is base64 text too: its 32 digits read as a 24-byte
    # key that is not the one meant. The base64 of a random key is all hex digits once in 2**49 or less.
    digits = data.strip()
    if len(digits) in (32, 48, 64) and all(chr(byte) in string.hexdigits for byte in digits):
        raise ValueError(
            f"holds {len(digits)} hexadecimal digits: an AES key is read raw or in base64, not in hex "
            "(convert it: xxd -r -p FILE | base64)"
        )
    try:
        key = base64.b64decode(digits, validate=True)
    except ValueError:
        key = None
    if len(data) in (16, 24, 32):
        # The base64 of a 16- or 24-byte key, written without a line end, has 24 or 32 characters: it was
        # taken for a raw key of them, and objects were encrypted with the wrong key, which no other client
        # given the key could read. A random raw key is base64 text once in 2**64: say how to mean either.
        if key is not None and len(key) in (16, 24):
            raise ValueError(
                f"holds {len(data)} characters that are either a raw {len(data)}-byte AES key or the base64 "
                f"of a {len(key)}-byte one: end the file with a line end to read it as base64, or write the "
                "base64 of its bytes in it, and a line end, to read them as a raw key"
            )
        return data
    if key is None:
        raise ValueError("holds neither a raw AES key nor one in base64")
    if len(key) not in (16, 24, 32):
        raise ValueError(
            f"holds no AES key: one has 16, 24 or 32 bytes, raw or in base64 (its base64 gives {len(key)})"
        )
    return key


def provider_from_settings(settings: Settings) -> KeyProviders | None:
    if not settings.s3_cse_key:
        return None
    active = provider_from_spec(settings.s3_cse_key, settings)
    older = [
        provider_from_spec(spec, settings, "s3_cse_old_keys")
        for spec in settings.s3_cse_old_keys.split(",")
        if spec.strip()
    ]
    return KeyProviders(active, [active, *older], bool(settings.s3_cse_allow_plaintext))
