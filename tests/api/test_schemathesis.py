"""schemathesis (property-based requests generated from /schema/openapi.json) against the app: every documented
operation, a few generated requests each, as an administrator; no request may be answered with a 5xx.

Bounded: a handful of examples per operation, no shrinking, derandomized, so the run stays around a minute.
"""

from __future__ import annotations

import asyncio

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from tests.helpers import creds, make_project, make_user

EXAMPLES = 6


def _run(schema) -> tuple[int, list[str]]:
    errors: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate], derandomize=True,
                  suppress_health_check=list(HealthCheck), database=None)
        def one(case):
            nonlocal calls
            calls += 1
            response = case.call(headers=creds("root"))
            if response.status_code >= 500:
                errors.append(f"{case.method} {case.formatted_path} {case.query or ''}: {response.status_code} "
                              f"{response.text[:200]}")

        one()
    return calls, errors


async def test_no_generated_request_is_a_server_error(app):
    await make_user("root", admin=True)
    await make_project("p", {"ana": "manager"})
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", app)
    calls, errors = await asyncio.to_thread(_run, schema)
    print(f"schemathesis: {calls} requests")
    assert calls > 100
    assert not errors, "\n".join(sorted(set(errors)))
