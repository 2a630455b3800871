#!/usr/bin/env bash
# The main job: set up, then show what xentcheck sees (backends, the worked example, exactly).
source "$(dirname "$0")/env.sh"
xentcheck backends
xentcheck explain "$@"
