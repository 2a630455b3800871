#!/usr/bin/env bash
# The project's tests: set up, then run pytest over tests/ (extra arguments go to pytest).
source "$(dirname "$0")/env.sh"
pytest "$@"
