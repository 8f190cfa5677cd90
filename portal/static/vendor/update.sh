#!/usr/bin/env bash
# Re-fetch the vendored front-end files at their pinned versions from the npm registry.
# htmx stays on 2.x: htmx.org 4.x changes attributes and events this portal relies on.
set -euo pipefail
HTMX=2.0.11
PICO=2.1.1
SWAGGER=5.35.0  # /schema/swagger
REDOC=2.5.4  # /schema/redoc (2.x: the standalone bundle)
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
cd "$tmp"
npm pack "htmx.org@$HTMX" "@picocss/pico@$PICO" "swagger-ui-dist@$SWAGGER" "redoc@$REDOC" >/dev/null
tar xzf "htmx.org-$HTMX.tgz" && cp package/dist/htmx.min.js "$here/htmx-$HTMX.min.js" && rm -rf package
tar xzf "picocss-pico-$PICO.tgz" && cp package/css/pico.min.css "$here/pico-$PICO.min.css" && rm -rf package
tar xzf "swagger-ui-dist-$SWAGGER.tgz" && cp package/swagger-ui-bundle.js "$here/swagger-ui-bundle-$SWAGGER.js" && \
  cp package/swagger-ui-standalone-preset.js "$here/swagger-ui-standalone-preset-$SWAGGER.js" && \
  cp package/swagger-ui.css "$here/swagger-ui-$SWAGGER.css" && rm -rf package
tar xzf "redoc-$REDOC.tgz" && cp package/bundles/redoc.standalone.js "$here/redoc-$REDOC.standalone.js"
rm -rf "$tmp"
echo "vendored htmx $HTMX, Pico CSS $PICO, Swagger UI $SWAGGER and Redoc $REDOC into $here"
