"""What gatewayctl needs from the stacks for sign-in and for replaying the audit writers' failures: the Cognito
domain and the failures queue as outputs, and an event source mapping that gives up on a batch while the
stream still holds it (so its position in the failures queue can be replayed)."""

from __future__ import annotations

import pytest

from stacks.constructs.audit_trail import replay_window_start
from tests.infrastructure.conftest import config_for, only

pytestmark = pytest.mark.infrastructure


def test_the_cognito_domain_url_is_an_output(every_environment):
    outputs = every_environment.stateless.find_outputs("CognitoDomainUrl")
    rendered = str(outputs["CognitoDomainUrl"]["Value"])
    assert "amazoncognito.com" in rendered and "https://" in rendered


def test_the_writer_failures_queue_url_is_an_output(synthesized):
    outputs = synthesized.stateful.find_outputs("AuditWriterFailuresUrl")
    assert outputs["AuditWriterFailuresUrl"]["Value"] == {"Ref": "AuditWriterFailures"}


def test_the_writer_gives_up_while_the_stream_still_holds_the_records(every_environment):
    _, mapping = only(every_environment.stateful, "AWS::Lambda::EventSourceMapping")
    properties = mapping["Properties"]
    retention_hours = config_for(every_environment.env).audit_stream_retention_hours
    age = properties["MaximumRecordAgeInSeconds"]
    assert properties["MaximumRetryAttempts"] == -1
    # Half the retention for the writer's own retries, the other half to replay from the stream.
    assert 60 <= age <= 604_800 and age * 2 <= retention_hours * 3600
    assert properties["DestinationConfig"]["OnFailure"]["Destination"]


@pytest.mark.parametrize(("hours", "seconds"), [(24, 12 * 3600), (168, 84 * 3600), (8760, 7 * 24 * 3600)])
def test_the_replay_window_stays_within_the_mappings_bounds(hours, seconds):
    assert replay_window_start(hours).to_seconds() == seconds
