#!/usr/bin/env bash
# The project's tests: set up, then run pytest over tests/ on every core (extra arguments go to pytest).
source "$(dirname "$0")/env.sh"
# one worker more than cores: part of the suite waits on subprocesses (pip, the CLI's startup), not on a core
pytest -n "$(( $(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1) + 1 ))" --dist worksteal "$@"
