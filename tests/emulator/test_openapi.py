"""The emulator against the official OpenAPI description (fixtures/, see its README), fuzzed with schemathesis.

Generation is derandomized and bounded, so a run is deterministic and takes a few seconds. Two
places where the description itself is wrong are worked around here, narrowly:

* ``SentimentSegment.confidence`` has ``type: "number,"`` / ``format: "float,"`` (a YAML typo), which
  makes the whole transcript response schema unusable; the stray commas are removed before loading.
* The ``config`` form field is typed as any string, while the description says it holds a JobConfig
  in JSON; positive (schema-valid) cases get a real JobConfig with the generated string as its
  ``tracking.title``, so "valid data is accepted" is checked with data that is actually valid.

And one gap: most operations document no 400/422 answer, so a request with a malformed parameter
has no documented status. For negative (schema-violating) cases the status-code check is skipped;
every other check, including that such requests are rejected with a 4xx, still applies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, positive_data_acceptance, status_code_conformance
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation

from emulator import Emulator, EmulatorOptions
from tests.emulator.support import API_KEY, AUTH, submit_id, wait_for, wav_bytes

SPEC = Path(__file__).parent / "fixtures" / "speechmatics-batch-openapi.yaml"


def corrected_spec() -> dict[str, Any]:
    raw = yaml.safe_load(SPEC.read_text())
    confidence = raw["definitions"]["SentimentSegment"]["properties"]["confidence"]
    assert confidence["type"] == "number,"  # the typo this works around; fails once the spec is fixed
    confidence.update(type="number", format="float")
    return raw


# Extra query parameters stay out of negative cases: the API ignores unknown ones on purpose (the SDKs
# send sm-sdk and sm-app), so "an undeclared parameter must be refused" would test the opposite. The
# Authorization header is not generated (and so not mutated away): every call carries the real key.
CONFIG = SchemathesisConfig.from_dict(
    {"generation": {"allow-extra-parameters": False, "with-security-parameters": False}}
)
SCHEMA = schemathesis.openapi.from_dict(corrected_spec(), config=CONFIG)


@SCHEMA.hook
def map_case(context, case):
    """Schema-valid job submissions get a real JobConfig, and fetch_data when they carry no file.

    Idempotent: schemathesis may map the same (explicit example) case more than once.
    """
    body_is_valid = _mode(case, ParameterLocation.BODY) == GenerationMode.POSITIVE
    if case.operation.label == "POST /jobs" and body_is_valid and isinstance(case.body, dict):
        config = _job_config(case.body.get("config"))
        if "data_file" in case.body:
            config.pop("fetch_data", None)
        else:
            config["fetch_data"] = {"url": "http://127.0.0.1:9/unreachable.wav"}  # ends as a fetch_error
        case.body = {**case.body, "config": json.dumps(config)}  # a copy: generated bodies may be shared
    return case


def _mode(case, location: ParameterLocation) -> GenerationMode:
    info = case.meta.components.get(location) if case.meta else None
    return info.mode if info else GenerationMode.POSITIVE


def _negative(case) -> bool:
    """Whether the request really violates the description.

    schemathesis re-validates a mapped body and, unable to validate its file part, then flags it as
    negative; a body that holds a real JobConfig is valid whatever that flag says.
    """
    for location in (case.meta.components if case.meta else {}):
        mapped_body = location == ParameterLocation.BODY and _is_job_config(case.body)
        if not mapped_body and _mode(case, location) == GenerationMode.NEGATIVE:
            return True
    return False


def _is_job_config(body: Any) -> bool:
    return isinstance(body, dict) and _parsed(body.get("config")) is not None


def _parsed(text: Any) -> dict[str, Any] | None:
    try:
        config = json.loads(text)
    except (TypeError, ValueError):
        return None
    return config if isinstance(config, dict) and config.get("type") == "transcription" else None


def _job_config(text: Any) -> dict[str, Any]:
    parsed = _parsed(text)
    if parsed is not None:
        return parsed
    return {"type": "transcription", "transcription_config": {"language": "en"}, "tracking": {"title": text}}


@pytest.fixture(scope="module")
def api() -> Iterator[Emulator]:
    options = EmulatorOptions(api_key=API_KEY, processing_seconds=0, seed=1, rate_limit_get_per_second=0,
                             rate_limit_post_per_second=0, max_wait_seconds=1)
    with Emulator(options) as emulator:
        yield emulator


@SCHEMA.parametrize()
@settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_conforms_to_the_openapi_description(case, api: Emulator) -> None:
    negative = _negative(case)
    excluded = [status_code_conformance, positive_data_acceptance] if negative else [negative_data_rejection]
    case.call_and_validate(base_url=api.url, headers=AUTH, excluded_checks=excluded)


@pytest.mark.parametrize("fmt", ["json-v2", "txt", "srt"])
def test_real_job_answers_match_the_response_schemas(api: Emulator, fmt: str) -> None:
    """Fuzzing mostly meets unknown job ids; here the 200 answers of real jobs are validated too."""
    done = submit_id(api.url, wav_bytes(5), tracking={"title": "t", "reference": "r", "tags": ["x"], "details": {}})
    rejected = submit_id(api.url, b"not audio")
    api.set_faults(addon_error_fraction=1.0)
    try:  # every documented *_errors list in the transcript metadata
        addons = submit_id(api.url, wav_bytes(2), translation_config={"target_languages": ["de"]},
                           summarization_config={}, sentiment_analysis_config={}, topic_detection_config={},
                           auto_chapters_config={})
        wait_for(lambda: api.job(addons)["status"] == "done")
    finally:
        api.set_faults(addon_error_fraction=0.0)
    wait_for(lambda: api.job(done)["status"] == "done" and api.job(rejected)["status"] == "rejected")
    checks = [
        ("GET", "/jobs/{jobid}", f"/jobs/{done}", {}),
        ("GET", "/jobs/{jobid}", f"/jobs/{rejected}", {}),
        ("GET", "/jobs", "/jobs", {"include_deleted": "true", "limit": "100"}),
        ("GET", "/jobs/{jobid}/transcript", f"/jobs/{done}/transcript", {"format": fmt}),
        ("GET", "/jobs/{jobid}/transcript", f"/jobs/{addons}/transcript", {"format": fmt}),
        ("GET", "/usage", "/usage", {}),
        ("DELETE", "/jobs/{jobid}", f"/jobs/{rejected}", {}),
    ]
    for method, template, path, params in checks:
        response = requests.request(method, api.url + path, headers=AUTH, params=params, timeout=10)
        assert response.status_code == 200, response.text
        SCHEMA[template][method].validate_response(response)
