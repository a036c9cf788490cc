"""Who may deliver a notification: a token bound to one job, and optionally only Speechmatics' egress addresses.

Speechmatics signs nothing, so the header it echoes from `auth_headers` is the proof. It must not be one secret
shared by every job: the API returns each job's config, `auth_headers` included, to anyone who can read the
account's jobs. So `WEBHOOK_SECRET` never leaves our machines; each job carries its own token,

    Authorization: Bearer v1.<reference>.<base64url(HMAC-SHA256(WEBHOOK_SECRET, "v1.<reference>"))>

where `<reference>` is the job's row (sent as `tracking.reference` too). A token proves only that job: the
server accepts it for the notification of the row it names, whose job id must be the notification's `id`.
A row whose id is not recorded yet takes the notification's `id` only if the API says that job carries the
row's reference. Anyone who reads a token can at most notify for that one job, which is the job they could
already read.

Jobs submitted by the version of 2026-11-30 carry the plain `Bearer <secret>`, shown to every reader of the
account's jobs: it is refused, the secret must be replaced on upgrading, and cronjob.py recovers those jobs as
it recovers any lost notification.

Every comparison is constant-time, and every secret is tried whatever the first answer, so timing does not
reveal which one matched. `WEBHOOK_SECRET_PREVIOUS` still verifies during a rotation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import TYPE_CHECKING

from notification_flow.api import ApiError, SpeechmaticsAPI, reference_of
from notification_flow.jobs import JobStore
from notification_flow.lifecycle import NotificationOutcome
from notification_flow.settings import EGRESS_IPS, Settings

if TYPE_CHECKING:  # only the server's Guard reads requests; client.py makes tokens without importing Flask
    from flask import Request

TOKEN_VERSION = "v1"  # noqa: S105 (a format version, not a password)
REFERENCE_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def job_token(secret: str, reference: str) -> str:
    """The bearer token for the job whose row is `reference`: what its `auth_headers` carry."""
    if not REFERENCE_PATTERN.fullmatch(reference):
        raise ValueError("a reference is 1 to 64 characters of A-Z a-z 0-9 _ -")
    return f"{TOKEN_VERSION}.{reference}.{_signature(secret, reference)}"


def auth_header(secret: str, reference: str) -> str:
    """The `auth_headers` line of one job's notification."""
    return f"Authorization: Bearer {job_token(secret, reference)}"


def _signature(secret: str, reference: str) -> str:
    digest = hmac.new(secret.encode(), f"{TOKEN_VERSION}.{reference}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# Why a notification is refused, and the status it is answered with.
REFUSALS = {NotificationOutcome.UNAUTHENTICATED: 401,  # no valid credential at all, or for no row of ours
            NotificationOutcome.WRONG_JOB: 403,  # a valid token, but of another job
            NotificationOutcome.ADDRESS_NOT_ALLOWED: 403,
            NotificationOutcome.UNPROVEN: 503}  # whose job it is cannot be asked now: Speechmatics retries


class Guard:
    def __init__(self, settings: Settings, store: JobStore, api: SpeechmaticsAPI | None) -> None:
        self.secrets = [secret for secret in (settings.webhook_secret, settings.webhook_secret_previous) if secret]
        self.allowed_ips = {ip for region in settings.allowed_regions for ip in EGRESS_IPS[region]}
        self.store = store
        self.api = api  # asked whose a job is, when a token's row has no job id yet

    def address_refused(self, request: Request) -> bool:
        return bool(self.allowed_ips) and request.remote_addr not in self.allowed_ips

    def authenticate(self, request: Request) -> str | None:
        """The row a correctly signed token names (checked without the database); None if there is none."""
        return self._signed_reference(request.headers.get("Authorization", "").encode("utf-8", "replace"))

    def refusal(self, reference: str, job_id: str) -> NotificationOutcome | None:
        """Why the token of row `reference` may not notify about `job_id`, or None if it may.

        A row without a job id yet (client.py's answer is late or was lost) takes this one only on the API's
        word that the job carries this reference, never on the notification's: the row then records the id.
        Without that word the answer is "not now" (Speechmatics retries; client.py or cronjob.py records the
        id meanwhile). Reads and may write the store (StoreUnavailable)."""
        job = self.store.find_by_reference(reference)
        if job is None:
            return NotificationOutcome.UNAUTHENTICATED  # signed by us, but for no row we have
        if job.job_id is not None:
            return None if job.job_id == job_id else NotificationOutcome.WRONG_JOB
        if self.api is None:
            return NotificationOutcome.UNPROVEN
        try:
            owner = reference_of(self.api.job(job_id))
        except ApiError:
            return NotificationOutcome.UNPROVEN
        if owner != reference or self.store.record_created(reference, job_id) is None:
            return NotificationOutcome.WRONG_JOB  # another row's job, or one already recorded elsewhere
        return None

    def _signed_reference(self, presented: bytes) -> str | None:
        """The reference of a well-formed, correctly signed token; None otherwise."""
        parts = presented.split(b" ", 1)
        if len(parts) != 2 or parts[0] != b"Bearer":
            return None
        fields = parts[1].split(b".")
        if len(fields) != 3 or fields[0] != TOKEN_VERSION.encode():
            return None
        reference = fields[1].decode("ascii", "replace")
        if not REFERENCE_PATTERN.fullmatch(reference):
            return None
        matches = [hmac.compare_digest(fields[2], _signature(secret, reference).encode()) for secret in self.secrets]
        return reference if any(matches) else None
