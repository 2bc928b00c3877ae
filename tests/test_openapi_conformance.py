"""The OpenAPI document at /v2/openapi.json says what the API really does: every
error is documented as RFC 9457 ``application/problem+json``, and schemathesis,
run against a real ``hoard serve``, finds no answer the document does not allow.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import HoardServer, new_tenant

PROBLEM = "application/problem+json"


def test_every_error_response_is_documented_as_problem_json(hoard: HoardServer) -> None:
    doc = httpx.get(hoard.url + "/v2/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert {"type", "title", "status", "detail", "instance"} <= set(
        schemas["Problem"]["properties"])
    assert "errors" in schemas["ValidationProblem"]["properties"]
    assert "HTTPValidationError" not in schemas
    autoscale = schemas["StorageAutoscale"]
    assert autoscale["required"] == ["max_gb"] and autoscale["additionalProperties"] is False
    assert autoscale["properties"]["threshold_percent"]["maximum"] == 90
    for body in ("ClusterCreate", "ClusterPatch", "ClusterView"):
        assert "storage_autoscale" in schemas[body]["properties"], body
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            where = f"{method.upper()} {path}"
            responses = op["responses"]
            assert "default" in responses, where
            if op.get("security"):
                assert "401" in responses, where
            if "requestBody" in op:
                assert {"400", "413", "415", "422"} <= set(responses), where
            for status, response in responses.items():
                if status == "default" or status[0] in "45":
                    assert list(response["content"]) == [PROBLEM], (where, status)


def test_schemathesis_finds_no_mismatch(hoard: HoardServer, admin: httpx.Client,
                                        tmp_path: Path) -> None:
    """Schemathesis (examples, coverage and fuzzing phases, every default check)
    against the live server, as a tenant whose quotas are all zero.

    Why that tenant: every operation is exercised, with no method or path left
    out and nothing stubbed, yet the run stays cheap. A create the fuzzer gets
    entirely right stops at the quota check, after all validation has run, so no
    database server is ever started; every path with an id answers 404, since
    the tenant owns nothing (configurations, plain rows, are the only thing it
    can make). Admin-only calls answer 403. Bounded: 10 examples per operation,
    one worker, 30 seconds for the whole run, a fixed seed so CI is repeatable.

    One check is left out, positive_data_acceptance: it calls any 4xx to a
    schema-valid request a failure, while Hoard answers 422 (documented on every
    operation with input) to requests that break a rule JSON Schema cannot state:
    a cron expression that never fires, a version the engine lacks, a restore
    naming neither a backup nor a cluster, nodes changed together with size.
    What a schema can state (name patterns, ids, engines, sizes, a non-empty
    PATCH) the document states.
    """
    token = new_tenant(admin, "schemathesis",
                       quotas={"clusters": 0, "nodes": 0, "storage_gb": 0})
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", hoard.url + "/v2/openapi.json",
         "--header", f"Authorization: Bearer {token}",
         "--phases", "examples,coverage,fuzzing", "--max-examples", "10",
         "--max-time", "30", "--workers", "1", "--seed", "1",
         "--request-timeout", "10", "--exclude-checks", "positive_data_acceptance",
         "--output-truncate", "false"],
        cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-3000:]
    # Every operation was selected: nothing was left out.
    found = re.search(r"(\d+) selected / (\d+) total", run.stdout)
    assert found and found[1] == found[2] and int(found[1]) > 30, run.stdout[-3000:]
