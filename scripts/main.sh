#!/usr/bin/env bash
# The main job: set up, then show what xentcheck sees: the backends available here, the worked example
# computed exactly, and every backend measured against the exact oracle (report in ./xentcheck-report).
source "$(dirname "$0")/env.sh"
xentcheck backends
xentcheck explain
xentcheck compare "$@"
