#!/usr/bin/env bash
# Prints the directory of every module in the workspace, one a line. Every multi-module make
# target loops over this list, because a bare root ./... misses modules (golang/go#50745).
set -euo pipefail
cd "$(dirname "$0")/.."
go list -m -f '{{.Dir}}' | grep -v '/\.golangci$'
