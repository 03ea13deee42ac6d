#!/bin/sh
# Installs the npm packages of the header tests into tests/scanners/node_modules (idempotent, quick when done):
# the MDN HTTP Observatory grader, Google's CSP Evaluator, and the swagger-ui-dist and redoc bundles that the
# browser tests serve in place of cdn.jsdelivr.net. No install script of any package runs (--ignore-scripts):
# the Observatory's would download the HSTS preload list and build a PostgreSQL driver; the tests give it an
# empty preload list instead.
set -eu
cd "$(dirname "$0")"
stamp=node_modules/.installed-package-lock.json
if ! cmp -s package-lock.json "$stamp"; then
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi
preload=node_modules/@mdn/mdn-http-observatory/conf/hsts-preload.json
[ -s "$preload" ] || echo '{}' > "$preload"
