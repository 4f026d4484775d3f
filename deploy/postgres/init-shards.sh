#!/bin/sh
# Creates Keel's shard databases. The postgres image runs the scripts in
# /docker-entrypoint-initdb.d once, on the first start of an empty data volume,
# with POSTGRES_USER and POSTGRES_DB set; the databases belong to that user.
# KEEL_SHARD_DATABASES (space-separated) names them; the default matches
# KEEL_SHARDING__SHARDS in docker-compose.yml. Append a name here and a DSN
# there to add a shard (then `python run.py reshard`; see README "Storage").
set -eu

for database in ${KEEL_SHARD_DATABASES:-keel_shard0 keel_shard1}; do
    echo "init-shards: creating database $database"
    # :"db" lets psql quote the name as an identifier.
    psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" \
        --dbname "$POSTGRES_DB" --set=db="$database" <<'SQL'
CREATE DATABASE :"db";
SQL
done
