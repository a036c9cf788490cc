"""Who may deliver a notification: the bearer secret Speechmatics echoes from `auth_headers`, and
optionally only from Speechmatics' published egress addresses.

Speechmatics signs nothing, so the secret is the proof. It is compared in constant time, and a second
(previous) secret is accepted so that it can be rotated without losing a notification in flight.
"""

from __future__ import annotations

import hmac

from flask import Request

from notification_flow.settings import EGRESS_IPS, Settings


class Guard:
    def __init__(self, settings: Settings) -> None:
        secrets = (settings.webhook_secret, settings.webhook_secret_previous)
        self.expected = [f"Bearer {secret}".encode() for secret in secrets if secret]
        self.allowed_ips = {ip for region in settings.allowed_regions for ip in EGRESS_IPS[region]}

    def refusal(self, request: Request) -> int | None:
        """The status to refuse the request with (403 wrong address, 401 wrong secret), or None."""
        if self.allowed_ips and request.remote_addr not in self.allowed_ips:
            return 403
        presented = request.headers.get("Authorization", "").encode("utf-8", "replace")
        # Check every secret, whatever the first answer, so timing does not reveal which one matched.
        matches = [hmac.compare_digest(presented, expected) for expected in self.expected]
        return None if any(matches) else 401
