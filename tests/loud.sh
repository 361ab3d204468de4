#!/bin/bash
# tests/loud.sh: sourced by the set-up scripts right after `set -euo
# pipefail`. A command that fails where nothing expected it to ends the
# script, as before, but with one line naming the command, its status and
# its line, instead of without a word.
set -E
loud_failed() {
    # Once, from the script's own shell (not from each subshell it is in).
    [ "$BASH_SUBSHELL" -eq 0 ] || return 0
    printf '%s: ERROR: `%s` failed (status %s, line %s): the output above says why; fix that and run it again\n' \
        "$(basename -- "$0" .sh)" "$2" "$1" "$3" >&2
}
trap 'loud_failed $? "$BASH_COMMAND" "$LINENO"' ERR
