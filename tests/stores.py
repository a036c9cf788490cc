"""What the tests ask of a transcript store beyond what the package needs: a full read of a stored transcript."""

from __future__ import annotations

from notification_flow import jsonv2
from notification_flow.transcripts import TranscriptStore


def holds_transcript(store: TranscriptStore, job_id: str) -> bool:
    """Whether the store holds this job's complete transcript, read to its end: a damaged file can have any
    size, that of the transcript too, so the sweep's look at its ends (`exists`) cannot tell. Publishing
    judges a file already there the same way."""
    return bool(store.read(store.key_for(job_id), lambda file: jsonv2.is_transcript_of(file, job_id)))
