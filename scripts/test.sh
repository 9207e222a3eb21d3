#!/usr/bin/env bash
# Runs every check and test of cognitomcp on a fresh machine: installs what is
# missing (Debian packages, npm packages, Go tools), then gofmt, go vet,
# staticcheck and go test -race with the Redis, Node and Chromium tests made
# mandatory. Usage: scripts/test.sh [extra go test flags]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

log() { printf '==> %s\n' "$*"; }

# Debian packages: redis-server for the store tests, chromium for the consent
# page (scripts/bench.sh installs wrk and curl for the load benchmark).
need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v chromium >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Node.js 20+ for the end-to-end client test. The machine image has it; a
# bare Debian gets its nodejs and npm, and, as Debian's nodejs is 18, Node 20
# from the npm registry.
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if ! command -v npm >/dev/null; then
  log "apt-get install nodejs npm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if [ "$(node_major)" -lt 20 ]; then
  log "npm install node@20 into .cache/node-runtime"
  npm install --no-audit --no-fund --loglevel=error --prefix "$root/.cache/node-runtime" node@20 >/dev/null
  export PATH="$root/.cache/node-runtime/node_modules/node/bin:$PATH"
fi

# The official MCP TypeScript SDK, for the end-to-end client test, in a
# cached folder outside the module.
node_dir=${COGNITOMCP_NODE_DIR:-$root/.cache/node}
if [ -f e2e/package.json ]; then
  if ! cmp -s e2e/package.json "$node_dir/package.json" || [ ! -d "$node_dir/node_modules/@modelcontextprotocol/sdk" ]; then
    log "npm install into $node_dir"
    mkdir -p "$node_dir"
    cp e2e/package.json "$node_dir/package.json"
    [ -f e2e/package-lock.json ] && cp e2e/package-lock.json "$node_dir/package-lock.json"
    (cd "$node_dir" && npm install --no-audit --no-fund --loglevel=error)
  fi
  export COGNITOMCP_NODE_MODULES="$node_dir/node_modules"
fi

# Go tools, pinned.
gobin=$(go env GOPATH)/bin
export PATH="$gobin:$PATH"
if ! staticcheck -version 2>/dev/null | grep -q '2026.1\|0.8.2\|v0.8.2'; then
  log "go install staticcheck"
  go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi

log "gofmt"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
log "go vet"
go vet ./...
log "staticcheck"
staticcheck ./...
log "go test -race"
export COGNITOMCP_FULL=1
go test -race -count=1 "$@" ./...
