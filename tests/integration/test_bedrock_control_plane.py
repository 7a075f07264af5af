"""The Bedrock emulator's control-plane listings, through botocore's own `bedrock` client (endpoint_url: the
region's port), as `gatewayctl models check` calls them."""

from __future__ import annotations

import urllib.error
import urllib.request

import boto3
import pytest
from botocore.exceptions import ClientError
from gateway.domain.catalog import load_catalog

from gatewayctl.local.stack import LocalStack


@pytest.fixture
def bedrock(backing_stack: LocalStack):
    backing_stack.reset_catalogs()
    yield lambda region: boto3.client(
        "bedrock",
        region_name=region,
        endpoint_url=backing_stack.bedrock_endpoints[region],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    backing_stack.reset_catalogs()


def test_profiles_are_listed_where_their_prefix_routes_and_paginate(bedrock):
    catalog = load_catalog()
    profiles = {p for e in catalog.entries for p in e.bedrock_profiles.values()}
    pages, token = [], None
    while True:
        page = bedrock("eu-west-1").list_inference_profiles(maxResults=5, **({"nextToken": token} if token else {}))
        pages.append(page["inferenceProfileSummaries"])
        token = page.get("nextToken")
        if not token:
            break
    listed = {s["inferenceProfileId"] for page in pages for s in page}
    assert len(pages) > 1 and all(len(p) <= 5 for p in pages)
    assert listed == {p for p in profiles if p.startswith(("eu.", "global."))}
    summary = pages[0][0]
    assert summary["status"] == "ACTIVE" and summary["type"] == "SYSTEM_DEFINED"
    assert summary["inferenceProfileArn"].startswith("arn:aws:bedrock:eu-west-1:")
    assert bedrock("eu-west-1").list_inference_profiles(typeEquals="APPLICATION")["inferenceProfileSummaries"] == []


def test_foundation_models_carry_their_lifecycle_and_the_switches_change_it(backing_stack, bedrock):
    model_id = load_catalog().lookup("claude-haiku-4-5").bedrock_model_id
    backing_stack.mark_legacy(model_id, end_of_life="2027-02-01T00:00:00Z")
    backing_stack.hide_profile("us.anthropic.claude-haiku-4-5-20251001-v1:0", "us-west-2")

    models = {m["modelId"]: m for m in bedrock("us-west-2").list_foundation_models()["modelSummaries"]}
    lifecycle = models[model_id]["modelLifecycle"]
    assert lifecycle["status"] == "LEGACY" and lifecycle["endOfLifeTime"].isoformat().startswith("2027-02-01")
    assert {m["modelLifecycle"]["status"] for k, m in models.items() if k != model_id} == {"ACTIVE"}

    def listed(region: str) -> set[str]:
        return {s["inferenceProfileId"] for s in bedrock(region).list_inference_profiles()["inferenceProfileSummaries"]}

    assert "us.anthropic.claude-haiku-4-5-20251001-v1:0" in listed("us-east-1") - listed("us-west-2")
    availability = bedrock("us-east-1").get_foundation_model_availability(modelId=model_id)
    assert availability["authorizationStatus"] == "AUTHORIZED"


def test_unsigned_requests_are_refused(backing_stack, bedrock):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{backing_stack.bedrock_endpoints['us-east-1']}/foundation-models", timeout=10)
    assert refused.value.code == 403
    with pytest.raises(ClientError) as unknown:
        bedrock("us-east-1").get_foundation_model_availability(modelId="anthropic.nope")
    assert unknown.value.response["Error"]["Code"] == "ResourceNotFoundException"
