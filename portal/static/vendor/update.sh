#!/usr/bin/env bash
# Re-fetch the vendored front-end files at their pinned versions from the npm registry.
# htmx stays on 2.x: htmx.org 4.x changes attributes and events this portal relies on.
set -euo pipefail
HTMX=2.0.11
PICO=2.1.1
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
cd "$tmp"
npm pack "htmx.org@$HTMX" "@picocss/pico@$PICO" >/dev/null
tar xzf "htmx.org-$HTMX.tgz" && cp package/dist/htmx.min.js "$here/htmx-$HTMX.min.js" && rm -rf package
tar xzf "picocss-pico-$PICO.tgz" && cp package/css/pico.min.css "$here/pico-$PICO.min.css"
rm -rf "$tmp"
echo "vendored htmx $HTMX and Pico CSS $PICO into $here"
