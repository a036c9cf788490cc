"""What we keep of a URL: never its query string, fragment or password, wherever in a text it appears."""

from __future__ import annotations

from notification_flow.redaction import redact_url, redact_urls_in


def test_a_url_loses_its_query_fragment_and_credentials() -> None:
    assert redact_url("https://user:pw@bucket.s3.example.com/a/b.wav?X-Amz-Signature=abc#t=3") == \
        "https://bucket.s3.example.com/a/b.wav"
    assert redact_url("http://127.0.0.1:8080/a.wav") == "http://127.0.0.1:8080/a.wav"


def test_a_fetch_error_that_quotes_the_url_keeps_the_url_without_its_signature() -> None:
    reason = 'Audio fetch error: Get "http://127.0.0.1:9/away.wav?sig=s3cr3t&x=1": connection refused'
    assert redact_urls_in(reason) == 'Audio fetch error: Get "http://127.0.0.1:9/away.wav": connection refused'
    assert redact_urls_in(None) is None and redact_urls_in("Audio fetch error, http status 404") == \
        "Audio fetch error, http status 404"
