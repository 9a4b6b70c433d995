#!/usr/bin/env bash
# Install the three agent CLIs from npm at the versions the harness was tested with.
# The native binaries ship inside the npm packages; nothing else is downloaded.
# Usage: tests/agents/install_clis.sh [PREFIX]   (default $ONEGC_CLI_DIR or /opt/onegc-audit/clis)
set -euo pipefail
PREFIX="${1:-${ONEGC_CLI_DIR:-/opt/onegc-audit/clis}}"
CLAUDE_CODE_VERSION=2.1.197
CODEX_VERSION=0.171.0
OPENCODE_VERSION=1.18.33
mkdir -p "$PREFIX"
cd "$PREFIX"
[ -f package.json ] || echo '{"name":"onegc-audit-clis","private":true}' > package.json
npm install --no-audit --no-fund --save-exact \
  "@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}" \
  "@openai/codex@${CODEX_VERSION}" \
  "opencode-ai@${OPENCODE_VERSION}"
# The agent runs as an unprivileged user: the tree must be world-readable.
chmod -R a+rX "$PREFIX"
for bin in node_modules/@anthropic-ai/claude-code/bin/claude.exe \
           node_modules/opencode-ai/bin/opencode.exe; do
  "$bin" --version
done
node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex --version
