#!/usr/bin/env bash
# The project's tests: set up, then run pytest over tests/ on every core (extra arguments go to pytest).
source "$(dirname "$0")/env.sh"
# one worker per core: a worker more made every test 1.7x slower on 2 cores (the multi-process tests' ranks
# and cluster workers compete for them), more than the 1.5x it adds
pytest -n "$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)" --dist worksteal "$@"
