"""URLs without their secrets: presigned URLs carry their signature in the query string, and a URL may carry a
password. What we record or log of a URL (client.py's row for a `--url`, a fetch error Speechmatics quotes it
in) goes through here first; the whole URL travels only in the job config."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

URL_IN_TEXT = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]+""")


def redact_url(url: str) -> str:
    """The URL without what may be secret in it: query string, fragment, user name and password."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def redact_urls_in(text: str | None) -> str | None:
    """`text` with every URL in it redacted (a fetch error quotes the URL it could not get, query and all)."""
    return URL_IN_TEXT.sub(lambda match: redact_url(match[0]), text) if text else text
