"""The lean JSON-protocol client against a moto server over HTTP, next to botocore's client: the same
answers, the same errors (conditional failures, cancelled transactions with their reasons), and the
event-loop path (`acall`) writing what the thread path reads back."""

from __future__ import annotations

import asyncio

import botocore.session
import pytest
from botocore.exceptions import ClientError
from gateway.adapters.aws_json import JsonClient

from tests.integration import test_tenancy_support as support

moto_url, moto_tables = support.moto_url, support.moto_tables  # fixtures


def clients(tables, service: str) -> tuple[JsonClient, object]:
    session = botocore.session.get_session()
    region = tables.settings.region
    lean = JsonClient(service, region, credentials=session.get_credentials(), endpoint_url=tables.url)
    real = session.create_client(service, region_name=region, endpoint_url=tables.url)
    return lean, real


def strip(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k != "ResponseMetadata"}


def test_dynamodb_answers_and_errors_match_botocores(moto_tables) -> None:
    lean, real = clients(moto_tables, "dynamodb")
    table = moto_tables.settings.usage_table
    key = {"pk": {"S": "USAGE#lean"}, "sk": {"S": "minute#1"}}
    update = dict(
        TableName=table,
        Key=key,
        UpdateExpression="ADD #r :one",
        ExpressionAttributeNames={"#r": "requests"},
        ExpressionAttributeValues={":one": {"N": "1"}},
        ReturnValues="ALL_NEW",
    )
    assert strip(lean.update_item(**update))["Attributes"]["requests"] == {"N": "1"}
    assert strip(real.update_item(**update))["Attributes"]["requests"] == {"N": "2"}
    assert strip(lean.get_item(TableName=table, Key=key)) == strip(real.get_item(TableName=table, Key=key))

    refused = [
        {
            "Update": {
                **{k: v for k, v in update.items() if k != "ReturnValues"},
                "ConditionExpression": "#r < :one",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
    ]
    errors = []
    for client in (lean, real):
        with pytest.raises(ClientError) as caught:
            client.transact_write_items(TransactItems=refused)
        errors.append(caught.value.response)
    ours, theirs = errors
    assert ours["Error"]["Code"] == theirs["Error"]["Code"] == "TransactionCanceledException"
    assert ours["CancellationReasons"] == theirs["CancellationReasons"]
    assert ours["ResponseMetadata"]["HTTPStatusCode"] == theirs["ResponseMetadata"]["HTTPStatusCode"]


def test_the_event_loop_path_writes_what_the_thread_path_reads(moto_tables) -> None:
    lean, _ = clients(moto_tables, "dynamodb")
    key = {"pk": {"S": "USAGE#async"}, "sk": {"S": "day#1"}}

    async def writes() -> list[dict]:
        put = {"TableName": moto_tables.settings.usage_table, "Item": {**key, "n": {"N": "7"}}}
        return await asyncio.gather(*(lean.acall("PutItem", put) for _ in range(3)))

    answers = asyncio.run(writes())
    assert all(a["ResponseMetadata"]["HTTPStatusCode"] == 200 for a in answers)
    assert lean.get_item(TableName=moto_tables.settings.usage_table, Key=key)["Item"]["n"] == {"N": "7"}
    with pytest.raises(ClientError) as caught:
        asyncio.run(lean.acall("GetItem", {"TableName": "no-such-table", "Key": key}))
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
