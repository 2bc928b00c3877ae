#!/usr/bin/env bash
# Installs the Patroni the PostgreSQL image carries (4.1.5 from PyPI, not Debian
# 12's 3.0.2: see images/postgresql/Dockerfile) into its own virtualenv under
# /opt/hoard, run by Debian's Python, where the database servers' own accounts
# can run it (Hoard's virtualenv may sit where they cannot reach). The tests
# that run Patroni on its Kubernetes DCS use it. Idempotent and quick when it is
# there.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
TARGET=/opt/hoard/patroni-4.1.5
STAMP="$TARGET/.installed-$(sha1sum "$HERE/patroni-image-constraints.txt" | cut -c1-12)"
[ -f "$STAMP" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO rm -rf "$TARGET"
$SUDO mkdir -p /opt/hoard
$SUDO /usr/bin/python3 -m venv "$TARGET"
$SUDO "$TARGET/bin/pip" install -q --disable-pip-version-check \
  -c "$HERE/patroni-image-constraints.txt" 'patroni[psycopg3]==4.1.5'
$SUDO chmod -R a+rX "$TARGET"
$SUDO touch "$STAMP"
