# Runs one bash snippet inside an eval sandbox, in a child process of envd.
# Started while the eval template is built, so it waits in the snapshot
# (see py-runner.py). Control on fd 3: it says ready, reads
# "<memory KiB> <random seed> <code file> <cwd>", says started, closes fd 3
# (the snippet never sees it) and sources the snippet: `exit N` sets the
# exit code, error messages name the snippet's own lines.
printf '{"type":"ready"}\n' >&3
IFS=' ' read -r __snapfn_mem __snapfn_seed __snapfn_code __snapfn_cwd <&3 || exit 0
ulimit -v "$__snapfn_mem" 2>/dev/null
# $RANDOM's state is part of the snapshot: every sandbox would repeat it.
RANDOM=$__snapfn_seed
cd "$__snapfn_cwd" || exit 1
printf '{"type":"started"}\n' >&3
exec 3>&-
unset __snapfn_mem __snapfn_seed __snapfn_cwd
source "$__snapfn_code"
