#!/usr/bin/env python3
"""A persistent command handler for skipq (docs/worker.md, "Persistent
command handlers"), standard library only.

The worker starts it once and writes one job per line on its stdin:

    {"id": 7, "kind": "echo", "queue": "default", "attempt": 1, "payload": {...}}

and it answers one line per job on its stdout:

    {"id": 7, "outcome": "ok", "result": {...}}
    {"id": 7, "outcome": "error", "error": "the payload asked to fail"}

This one echoes the payload as the result, and fails a job whose payload
says {"fail": true}. In the config:

    handlers:
      echo:
        command: [/path/to/persistent.py]   # executable, run as is
        persistent: true
        processes: 4

Anything printed to stdout that is not the answer breaks the protocol
(the worker kills and restarts the process): log to stderr instead.
"""
import json
import sys


def work(payload):
    """The job's work: its result, or raise to fail the attempt."""
    if isinstance(payload, dict) and payload.get("fail"):
        raise RuntimeError("the payload asked to fail")
    return payload


def main():
    for line in sys.stdin:
        job = json.loads(line)
        try:
            answer = {"id": job["id"], "outcome": "ok", "result": work(job["payload"])}
        except Exception as e:  # any failure is this job's failed attempt
            answer = {"id": job["id"], "outcome": "error", "error": str(e)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()  # the worker waits for the whole line


if __name__ == "__main__":
    main()
