#!/bin/sh
# mssante-relay as installed by the Debian package. The configuration is
# /etc/mssante-relay/relay.toml unless --config or $MSSANTE_RELAY_CONFIG names another.
# Run by root, the command runs as the service user, so that every file it writes in
# /var/lib/mssante-relay (store, keys, archives) stays readable by the daemon.
: "${MSSANTE_RELAY_CONFIG:=/etc/mssante-relay/relay.toml}"
export MSSANTE_RELAY_CONFIG
exe=/opt/mssante-relay/venv/bin/mssante-relay
if [ "$(id -u)" = 0 ]; then
    HOME=/var/lib/mssante-relay exec setpriv --reuid=mssante-relay --regid=mssante-relay --init-groups \
        --inh-caps=-all -- "$exe" "$@"
fi
exec "$exe" "$@"
