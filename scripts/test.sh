#!/usr/bin/env bash
# The project's tests: set up, then run pytest over tests/ on every core (extra arguments go to pytest).
source "$(dirname "$0")/env.sh"
pytest -n auto --dist worksteal "$@"
