#!/bin/sh
# Runs a unit test against a fresh SoftHSM2 token made here and removed afterwards:
#   with-softhsm.sh DATA_DIR TEST [ARGS...]
# DATA_DIR is tests/unit/crypto/data: its kc-rsa.key.pem becomes the token's private key
# "kc-rsa". The test gets KH_P11_MODULE, KH_P11_TOKEN, KH_P11_PIN, KH_P11_KEY (and
# KH_TEST_DATA, SOFTHSM2_CONF). SoftHSM2 is a build prerequisite (scripts/install-deps):
# without it the test fails, it is not skipped.
set -eu
data=$1
shift

module=
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
         /usr/lib64/pkcs11/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
        if [ -r "$m" ]; then module=$m; break; fi
done
if [ -z "$module" ] || ! command -v softhsm2-util >/dev/null 2>&1; then
        echo "with-softhsm.sh: SoftHSM2 (libsofthsm2.so, softhsm2-util) is not installed;" \
             "scripts/install-deps installs it" >&2
        exit 1
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/kh-softhsm.XXXXXX")
trap 'rm -rf "$dir"' EXIT INT TERM
mkdir "$dir/tokens"
cat > "$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
SOFTHSM2_CONF=$dir/softhsm2.conf
export SOFTHSM2_CONF

softhsm2-util --init-token --free --label kh-test --so-pin 1234 --pin 5678 >/dev/null
softhsm2-util --import "$data/kc-rsa.key.pem" --token kh-test --label kc-rsa --id 01 \
        --pin 5678 >/dev/null

rc=0
KH_P11_MODULE=$module KH_P11_TOKEN=kh-test KH_P11_PIN=5678 KH_P11_KEY=kc-rsa \
        KH_TEST_DATA=$data "$@" || rc=$?
exit $rc
