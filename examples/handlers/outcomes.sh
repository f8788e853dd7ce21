#!/bin/sh
# outcomes.sh - a command handler that uses the control descriptor
# (docs/worker.md, "Outcomes and progress"): it reports progress while it
# works, and says "fail for good", "snooze" or "cancel" instead of leaving
# every failure to the retry policy. The payload is the job's JSON on
# stdin; this one reads {"steps": N, "mode": "..."} with sed, to need
# nothing but a POSIX shell.
#
#   handlers:
#     demo:
#       command: [/bin/sh, examples/handlers/outcomes.sh]
#
#   skipq enqueue demo '{"steps": 5}'                  # progress, then success
#   skipq enqueue demo '{"mode": "bad"}'               # failed at once, no retries
#   skipq enqueue demo '{"mode": "later"}'             # runs again in a minute, not counted
#   skipq enqueue demo '{"mode": "tomorrow"}'          # runs again at a set time
#   skipq enqueue demo '{"mode": "drop"}'              # cancelled with a reason
set -eu
ctl=${SKIPQ_CONTROL_FD:-3}
payload=$(cat)
field() { printf '%s' "$payload" | sed -n "s/.*\"$1\": *\"\{0,1\}\([^\",}]*\).*/\1/p"; }
say() { printf '%s\n' "$1" >&"$ctl"; }

case "$(field mode)" in
bad)
    say '{"outcome": "fail", "error": "the payload names no customer"}'
    exit 1
    ;;
later)
    say '{"outcome": "snooze", "delay_ms": 60000}'
    exit 0
    ;;
tomorrow)
    say "{\"outcome\": \"snooze\", \"until\": \"$(date -u -d tomorrow +%Y-%m-%dT09:00:00Z)\"}"
    exit 0
    ;;
drop)
    say '{"outcome": "cancel", "reason": "nothing to do for this one"}'
    exit 0
    ;;
esac

steps=$(field steps)
steps=${steps:-3}
i=1
while [ "$i" -le "$steps" ]; do
    say "{\"progress\": $((i * 100 / steps)), \"message\": \"step $i of $steps\"}"
    sleep 1
    i=$((i + 1))
done
echo "{\"steps\": $steps}"
