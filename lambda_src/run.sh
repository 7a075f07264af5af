#!/bin/bash
# Lambda Web Adapter entry (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap runs this as the handler).
# The adapter forwards each invocation to http://127.0.0.1:$AWS_LWA_PORT, so uvicorn listens on loopback
# only; one worker per execution environment (Lambda runs one request per environment at a time).
export PYTHONPATH="$LAMBDA_TASK_ROOT:${PYTHONPATH:-}"
# --no-proxy-headers: the adapter connects from loopback, which uvicorn trusts by default; it would then take
# the caller's own X-Forwarded-For as its address (the source IP comes from the request context instead).
exec python -m uvicorn gateway.main:app \
  --host 127.0.0.1 --port "${AWS_LWA_PORT:-8080}" \
  --workers 1 --no-access-log --timeout-keep-alive 900 --log-level warning --no-proxy-headers
