#!/usr/bin/env bash
# Installs the Debian packages Hoard's engines and tools need. Idempotent and
# quick when everything is present: apt runs only for what is missing.
set -euo pipefail

PACKAGES=(
  postgresql-15 postgresql-client-15   # the PostgreSQL engine, psql, pgbench
  mariadb-server mariadb-client        # the MariaDB engine and its client
  mariadb-backup                       # MariaDB physical backups (mbstream too)
  redis-server redis-tools             # the Redis engine, redis-cli, redis-benchmark
  redis-sentinel                       # Redis failover (replicated clusters)
  patroni etcd-server                  # PostgreSQL failover, and the etcd Hoard runs for it
  galera-4 socat rsync                 # MariaDB replicated clusters (Galera, its state transfers)
  haproxy                              # replicated clusters' stable endpoints
  pgbouncer                            # PostgreSQL clusters' optional connection pooler
  util-linux passwd                    # setpriv (drop privileges), nsenter, useradd
  iproute2                             # the netns provider: a network namespace per node
  e2fsprogs mount                      # a sized filesystem per node (mkfs.ext4, loop mounts)
  xfsprogs                             # XFS volumes, which grow mounted where ext4 may not
  tar diffutils coreutils              # tools the backup code runs beside the data
  python3-venv                         # the virtualenv for Hoard itself
  chromium                             # the console's browser tests (driven by Playwright)
  ca-certificates
)

# npm installs axe-core for the console's accessibility checks (tests/a11y/); a
# Node.js that ships its own npm is kept as it is.
command -v npm >/dev/null || PACKAGES+=(nodejs npm)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# Hoard makes its own database clusters; stop the package from creating a default one.
$SUDO apt-get install -y -q --no-install-recommends postgresql-common
$SUDO sed -i 's/^#\?\s*create_main_cluster.*/create_main_cluster = false/' \
  /etc/postgresql-common/createcluster.conf
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
