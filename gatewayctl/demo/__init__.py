"""The demo: six things the gateway does, shown against a running local stack (`gatewayctl demo`).

1. a streamed reply;  2. a refused capability (opus, tools for a basic_user);  3. a quota 429;
4. a throttled region served by failover;  5. the audit trail of all of the above (query + verify);
6. a GDPR export of one person.

The command (gatewayctl/commands/demo.py) starts and stops the stack; this package only needs a
`Target` of a running local stack.
"""

from gatewayctl.demo.model import StepResult
from gatewayctl.demo.output import Out
from gatewayctl.demo.runner import Demo

__all__ = ["Demo", "Out", "StepResult"]
