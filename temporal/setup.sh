#!/bin/sh
# Keel's Temporal set-up, the one script for every cluster: create the namespace
# (KEEL_TEMPORAL_NAMESPACE, retention KEEL_TEMPORAL_NAMESPACE_RETENTION_DAYS) unless it
# exists, then register Keel's search attributes (KeelUserId, KeelSessionId, KeelKind).
# Idempotent. `keel dev` runs the same code (infra/temporal_setup.py: setup_temporal)
# against its embedded server; the Helm chart runs this as its set-up Job. Connection
# settings are Keel's own: KEEL_TEMPORAL_ADDRESS, KEEL_TEMPORAL_TLS_*, KEEL_TEMPORAL_API_KEY.
# On Temporal Cloud, create the namespace and the search attributes with tcld or the Cloud
# UI first: this script then only checks that they are there.
set -eu
exec keel temporal-setup "$@"
