#!/usr/bin/env bash
# flaky: a skill in bash that talks to the board only through the worker CLI.
# It succeeds, fails or crashes (SIGKILLs itself, no report) at random, as its payload says.
#
# Payload (all optional):
#   {"outcome": "succeed" | "fail" | "crash",   force one outcome instead of rolling
#    "failPercent": 30, "crashPercent": 20,     odds of the roll (the rest succeeds)
#    "sleepSeconds": 1}                         work time before the outcome
#
# The CLI: $KANBAN_CLI (an executable, or a command line split on spaces such as
# "node /path/cli.js"), else the repository's supervisor/dist/cli.js next to this script,
# else `kanban-supervisor` on PATH.
set -u

here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
if [[ -n "${KANBAN_CLI:-}" && -x "$KANBAN_CLI" && ! -d "$KANBAN_CLI" ]]; then
  cli=("$KANBAN_CLI")
elif [[ -n "${KANBAN_CLI:-}" ]]; then
  read -r -a cli <<< "$KANBAN_CLI"
elif [[ -f "$here/../../supervisor/dist/cli.js" ]]; then
  cli=(node "$here/../../supervisor/dist/cli.js")
else
  cli=(kanban-supervisor)
fi
kw() { "${cli[@]}" worker "$@"; }

trap 'echo "flaky: stopping on SIGTERM" >&2; exit 143' TERM
trap 'echo "flaky: stopping on SIGINT" >&2; exit 130' INT

field() { kw payload --get "$1"; }

outcome="$(field outcome)" || exit $?
fail_pct="$(field failPercent)" || exit $?
crash_pct="$(field crashPercent)" || exit $?
sleep_s="$(field sleepSeconds)" || exit $?
fail_pct="${fail_pct:-30}"
crash_pct="${crash_pct:-20}"
sleep_s="${sleep_s:-1}"

bad() {
  echo "flaky: $1" >&2
  kw fail --error "flaky: $1"
  exit 1
}
[[ "$fail_pct" =~ ^[0-9]+$ ]] || bad "payload.failPercent must be a whole number, got $fail_pct"
[[ "$crash_pct" =~ ^[0-9]+$ ]] || bad "payload.crashPercent must be a whole number, got $crash_pct"
[[ "$sleep_s" =~ ^[0-9]+(\.[0-9]+)?$ ]] || bad "payload.sleepSeconds must be a number of seconds, got $sleep_s"

roll=$((RANDOM % 100))
if [[ -z "$outcome" ]]; then
  if ((roll < crash_pct)); then
    outcome=crash
  elif ((roll < crash_pct + fail_pct)); then
    outcome=fail
  else
    outcome=succeed
  fi
fi
case "$outcome" in
  succeed | fail | crash) ;;
  *) bad "payload.outcome must be succeed, fail or crash" ;;
esac

# Only a fenced-out heartbeat (exit 3: the run was reclaimed) is a reason to stop; a board that cannot
# take a heartbeat right now is not the skill's failure.
kw heartbeat --progress "{\"roll\":$roll,\"outcome\":\"$outcome\"}"
hb=$?
[[ $hb -eq 3 ]] && exit 3
kw event flaky.rolled --data "{\"roll\":$roll,\"outcome\":\"$outcome\"}" || exit $?

# In the background so that the TERM trap runs at once.
sleep "$sleep_s" &
wait $!

case "$outcome" in
  succeed)
    kw complete --result "{\"roll\":$roll,\"outcome\":\"succeed\"}" || exit $?
    exit 0
    ;;
  fail)
    kw fail --error "flaky: rolled $roll, failing on purpose" || exit $?
    exit 1
    ;;
  crash)
    echo "flaky: rolled $roll, crashing without a report" >&2
    kill -KILL $$
    ;;
esac
