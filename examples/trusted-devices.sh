#!/usr/bin/env bash
# Trusted devices, login with a device and admin approval (issue #17), played with the
# `keyhold` CLI against a running `keyholdd --dev`:
#
#   1. a member's laptop becomes a trusted device (it holds the user key already);
#   2. a desktop asks for the key; the laptop approves; the desktop gets the key and
#      trusts itself;
#   3. the member enrols in account recovery from the laptop;
#   4. a phone asks the tenant's approvers instead; the admin approves (keyhold releases
#      the key through the recovery key, server-side); the phone gets the key;
#   5. the member untrusts the desktop from the laptop: the desktop's unlock fails.
#
# Each device is its own --state folder. Member tokens come from `keyhold dev-token`, the
# admin is the operator on the dev admin socket.
#
# Usage: examples/trusted-devices.sh [DATA]
#   DATA              the dev data folder (default ./keyhold-dev, as `keyholdd --dev` makes it)
#   KEYHOLD           the keyhold binary (default: keyhold on PATH, else build/src/cli/keyhold)
#   KEYHOLD_URL       the server (default https://127.0.0.1:8443)
# Exits 0 when every step behaved as told, 1 at the first that did not.
set -euo pipefail

DATA=${1:-./keyhold-dev}
URL=${KEYHOLD_URL:-https://127.0.0.1:8443}
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${KEYHOLD:-}" ]; then
        if command -v keyhold >/dev/null; then KEYHOLD=keyhold
        else KEYHOLD=$here/../build/src/cli/keyhold; fi
fi
unset KEYHOLD_TOKEN KEYHOLD_SOCKET KEYHOLD_TENANT KEYHOLD_STATE

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }
json_field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"; } # a string field of one JSON line

# A member, as their identity provider would log them in on every device.
member=$(cat /proc/sys/kernel/random/uuid)
email="alice-${member:0:8}@example.com"
"$KEYHOLD" dev-token --data "$DATA" --user "$member" --email "$email" > "$work/member.jwt"
chmod 600 "$work/member.jwt"
# The member's user key (Bitwarden's 64 bytes), which the laptop holds already.
{ head -c 64 /dev/urandom | base64 -w0; echo; } > "$work/user.key"
chmod 600 "$work/user.key"

on() { # on DEVICE keyhold-args...: a command on that device, as the member
        local device=$1
        shift
        "$KEYHOLD" --url "$URL" --cacert "$DATA/tls.crt" --token-file "$work/member.jwt" \
                --state "$work/$device" "$@"
}
admin() { "$KEYHOLD" --socket "$DATA/admin.sock" "$@"; }

step "1. The laptop becomes a trusted device of $email ($member)"
on laptop device trust --user-key-file "$work/user.key" --name laptop
on laptop device unlock --out "$work/laptop.key"
cmp -s "$work/user.key" "$work/laptop.key" || fail "the laptop does not unlock the user key"

step "2. The desktop asks; the laptop approves; the desktop trusts itself"
request=$(on desktop login-request create --name desktop --json | json_field id)
[ -n "$request" ] || fail "no request id"
on desktop login-request wait "$request" --timeout 60 --out "$work/desktop.key" &
waiting=$!
phrase=$(on laptop login-request approve "$request" --json | json_field fingerprint)
echo "approved $request on the laptop (fingerprint phrase $phrase)"
wait "$waiting" || fail "the desktop got no key"
cmp -s "$work/user.key" "$work/desktop.key" || fail "the desktop got another key"
on desktop device trust --user-key-file "$work/desktop.key"
on desktop device unlock >/dev/null || fail "the desktop does not unlock"

step "3. The member enrols in account recovery (from the laptop's trust)"
on laptop recovery enrol

step "4. The phone asks the approvers; the admin approves through the recovery key"
request=$(on phone login-request create --admin --name phone --json | json_field id)
[ -n "$request" ] || fail "no admin request id"
admin approvals list
admin approvals approve "$request"
on phone login-request wait "$request" --timeout 60 --out "$work/phone.key"
cmp -s "$work/user.key" "$work/phone.key" || fail "the phone got another key"

step "5. The member untrusts the desktop: its unlock fails"
desktop=$(sed -n 's/.*"identifier":"\([^"]*\)".*/\1/p' "$work/desktop/device.json")
on laptop device untrust "$desktop"
admin device list --user "$member"
if on desktop device unlock; then
        fail "the untrusted desktop still unlocks"
fi

printf '\nThe story played as told.\n'
