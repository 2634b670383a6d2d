"""The one place URIs lose their secrets before we print, log, tag or store them.

A URI keeps what locates the service (scheme, host, port, path, harmless query parameters) and loses what
grants access: the password of its user info (a user name alone, which may be a token, goes too) and the
values of query parameters named like credentials (token, key, secret, password, signature, sig, ...).
`redact_text` does the same to every URI inside a longer text (an error message, a reason, a log line).
Pure string work: no imports beyond the standard library, usable from every layer.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

MASK = "***"
# Query parameter names that carry credentials, matched case-insensitively: exact names, and names containing
# one of the words (api_key, X-Amz-Signature, access_token, client_secret, db_password, ...).
SECRET_NAMES = frozenset({"sig", "auth", "pwd", "pass", "code", "jwt", "session"})
SECRET_WORDS = ("token", "key", "secret", "password", "passwd", "signature", "credential", "authorization")
# scheme://anything-up-to-whitespace-or-quote: the URIs inside a text
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")


def secret_name(name: str) -> bool:
    """Whether a query parameter of this name carries a credential."""
    low = name.lower()
    return low in SECRET_NAMES or any(word in low for word in SECRET_WORDS)


def redact_uri(uri: str) -> str:
    """`uri` without its password, a bare user name, or the values of credential query parameters.

    `http://admin:pw@host:5000/?token=t&x=1` -> `http://admin:***@host:5000/?token=***&x=1`; a URI without
    secrets comes back unchanged. What cannot be parsed loses everything after the scheme's `//`."""
    if "://" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user, colon, _password = userinfo.partition(":")
            netloc = f"{user}:{MASK}@{hostport}" if colon and user else f"{MASK}@{hostport}"
        query = _redact_query(parts.query)
        fragment = _redact_query(parts.fragment) if "=" in parts.fragment else parts.fragment
    except ValueError:
        return uri.split("://", 1)[0] + "://" + MASK
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return uri
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def _redact_query(query: str) -> str:
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(secret_name(name) for name, _ in pairs):
        return query
    return "&".join(
        f"{quote(name, safe='')}={MASK if secret_name(name) else quote(value, safe='')}" for name, value in pairs
    )


def redact_text(text: str) -> str:
    """`text` with every URI in it redacted (see `redact_uri`)."""
    if "://" not in text:
        return text
    return _URI.sub(lambda m: redact_uri(m.group(0)), text)


def has_secrets(uri: str) -> bool:
    """Whether `uri` carries something `redact_uri` hides."""
    return redact_uri(uri) != uri


def secrets_of(uri: str) -> list[str]:
    """The secret values inside `uri` (password or bare user name, credential query values), raw and decoded."""
    from urllib.parse import unquote

    if "://" not in uri:
        return []
    try:
        parts = urlsplit(uri)
    except ValueError:
        return []
    found: list[str] = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        user, colon, password = userinfo.partition(":")
        found.append(password if colon and user else userinfo)
    for text in (parts.query, parts.fragment):
        for piece in text.split("&"):
            name, _, value = piece.partition("=")
            if value and secret_name(unquote(name)):
                found.append(value)
    # the decoded forms too, longest first so that no shorter secret masks part of a longer one
    values = {v for s in found if s for v in (s, unquote(s), unquote(s.replace("+", " ")))}
    return sorted((v for v in values if len(v) >= 3), key=len, reverse=True)


def scrub(text: str, uris: list[str] | tuple[str, ...] = ()) -> str:
    """`text` with every URI redacted and every secret of `uris` masked wherever it appears (also outside a URI,
    as in a server's echo of a request)."""
    text = redact_text(text)
    for uri in uris:
        for secret in secrets_of(uri):
            text = text.replace(secret, MASK)
    return text
