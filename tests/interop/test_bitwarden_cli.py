"""The real Bitwarden CLI logs in and unlocks through keyholdd (issue: Bitwarden interop in
every test run). Every flow runs with every pinned CLI release (bwcli.VERSIONS); where a
release has both Key Connector code paths (its TypeScript "legacy" path and the Bitwarden
SDK's, chosen by a feature flag in the server's config), the flow runs both.

A vault "decrypts" when `bw list items` (and, in flow 1, `bw get item`) returns exactly the
plaintext the test generated: the stand-in holds only ciphertext under the member's user
key, and the user key only wrapped under the key connector key that keyholdd holds.

  flow 1  a Key Connector member logs in with an API key and unlocks through keyholdd
  flow 2  a master-password member converts (the CLI posts the key during `bw unlock`), then
          a fresh login unlocks through keyholdd
  flow 3  the server re-wraps the user key under a new key connector key and PUTs it to
          keyholdd; the CLI unlocks with the new key
  flow 4  a member with no key stored: the CLI cannot unlock and says so; nothing is created
  flow 5  a second tenant with its own issuer unlocks through /t/{tenant}, and cannot reach
          the first tenant's key
  flow 6  keyholdd is killed (SIGKILL) between login and unlock; the CLI unlocks after the
          restart with the same key
"""
import base64
import json
import os

import pytest

import bwcrypto
from bitwarden import Member
from harness import Metrics, assert_empty_200, assert_error


def tenant_path(tenant: str) -> str:
    return "" if tenant == "default" else f"/t/{tenant}"


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def enrol(k, bw, m: Member, tenant: str = "default") -> None:
    """Stores m's key connector key in keyholdd, as a Bitwarden client does when the
    account is made (an SSO login token from the stand-in)."""
    r = k.client.post(tenant_path(tenant) + "/user-keys", token=bw.token(m, "external"),
                      json_body={"key": b64(m.kc_key)})
    assert_empty_200(r)


def stored_key(k, bw, m: Member, tenant: str = "default") -> bytes | None:
    r = k.client.get(tenant_path(tenant) + "/user-keys", token=bw.token(m, "external"))
    if r.status == 404:
        assert_error(r, 404, "key_not_found")
        return None
    assert r.status == 200, r
    return base64.b64decode(r.json()["key"])


def assert_opens_user_key(key: bytes, m: Member) -> None:
    """key (from keyholdd) is the key connector key of m's wrapped user key."""
    assert key is not None and len(key) == 32
    assert bwcrypto.decrypt_type2(bwcrypto.stretch(key), m.wrapped_user_key) == m.user_key


def login_items(cli) -> set:
    return {(i["id"], i["name"], i["notes"], i["login"]["username"], i["login"]["password"],
             tuple(u["uri"] for u in i["login"]["uris"])) for i in cli.items()}


def made_items(m: Member) -> set:
    return {(i.id, i.name, i.notes, i.username, i.password, (i.uri,)) for i in m.items}


def assert_vault(cli, m: Member) -> None:
    assert login_items(cli) == made_items(m), "the vault did not decrypt to what the test made"


def new_cli(cli, version: str, bw, variant: str, k=None, tenant: str = "default"):
    """A fresh CLI pointed at the stand-in. With the legacy variant it also gets the Key
    Connector URL (the legacy path reads it from the CLI's own settings); with the SDK
    variant it gets none, so a success proves the SDK took it from the login response."""
    c = cli(version)
    kc = None
    if variant == "legacy":
        kc = bw.key_connector_url if k is None else \
            f"https://127.0.0.1:{k.port}{tenant_path(tenant)}"
    c.configure(bw.base_url(variant), kc)
    return c


def api_login(c, m: Member):
    return c.login(lambda: c.login_apikey(m.client_id, m.client_secret), lambda: m.syncs)


def sso_login(c, m: Member) -> None:
    call = c.login(lambda: c.login_sso(m.id), lambda: m.syncs)
    assert call.rc == 0, f"SSO login failed\n{call!r}"


def login_ok(c, m: Member) -> None:
    call = api_login(c, m)
    assert call.rc == 0 and c.session, f"API key login failed\n{call!r}"


def convert(c, m: Member) -> None:
    sso_login(c, m)
    call = c.unlock_converting(m.password)
    assert call.rc == 0 and c.session, f"unlock with conversion failed\n{call!r}"
    assert m.converted == 1 and m.uses_key_connector


# ------------------------------------------------------------------------------ flow 1


def test_flow1_key_connector_member_unlocks(version, variant, bitwarden, keyholdd, cli):
    bw = bitwarden["default"]
    m = bw.add(Member("kc-member", kc_key=os.urandom(32)))
    enrol(keyholdd, bw, m)

    c = new_cli(cli, version, bw, variant)
    login_ok(c, m)
    c.ok("sync")
    assert_vault(c, m)
    one = m.items[0]
    got = c.item(one.id)
    assert (got["name"], got["login"]["password"], got["notes"]) == \
        (one.name, one.password, one.notes)
    assert stored_key(keyholdd, bw, m) == m.kc_key, "keyholdd's key changed by a login"


# ------------------------------------------------------------------------------ flow 2


def test_flow2_master_password_member_converts(version, variant, bitwarden, keyholdd, cli):
    bw = bitwarden["default"]
    m = bw.add(Member("mp-member", password="correct horse battery staple " + os.urandom(4).hex()))
    assert stored_key(keyholdd, bw, m) is None

    c = new_cli(cli, version, bw, variant)
    convert(c, m)
    assert_vault(c, m)

    key = stored_key(keyholdd, bw, m)
    assert_opens_user_key(key, m)
    if variant == "legacy":
        # The legacy path posts the member's master key itself.
        assert key == bwcrypto.master_key(m.password, m.email)

    fresh = new_cli(cli, version, bw, variant)
    login_ok(fresh, m)
    assert_vault(fresh, m)


# ------------------------------------------------------------------------------ flow 3


def test_flow3_rewrapped_key_unlocks(version, bitwarden, keyholdd, cli):
    bw = bitwarden["default"]
    old_key = os.urandom(32)
    m = bw.add(Member("rewrap-member", kc_key=old_key))
    enrol(keyholdd, bw, m)
    before = new_cli(cli, version, bw, "legacy")
    login_ok(before, m)
    assert_vault(before, m)

    new_key = os.urandom(32)
    r = keyholdd.client.put("/user-keys", token=bw.token(m, "external"),
                            json_body={"key": b64(new_key)})
    assert_empty_200(r)
    m.rewrap(new_key)
    assert stored_key(keyholdd, bw, m) == new_key

    after = new_cli(cli, version, bw, "legacy")
    login_ok(after, m)
    assert_vault(after, m)


# ------------------------------------------------------------------------------ flow 4


def test_flow4_member_without_key_cannot_unlock(version, variant, bitwarden, keyholdd, cli):
    bw = bitwarden["default"]
    m = bw.add(Member("no-key-member", kc_key=os.urandom(32)))   # never enrolled
    before = keyholdd.metrics()

    c = new_cli(cli, version, bw, variant)
    call = api_login(c, m)
    assert call.rc != 0, f"the CLI unlocked without a key in keyholdd\n{call!r}"
    said = (call.out + call.err).lower()
    assert "key connector" in said, f"the CLI did not name Key Connector as the cause\n{call!r}"
    # The legacy path logs the member out; the SDK path leaves them logged in, but locked.
    status = c.run("status")
    assert status.rc == 0 and json.loads(status.out)["status"] in ("unauthenticated", "locked"), \
        status

    after = keyholdd.metrics()

    def count(mx: Metrics, status: str) -> float:
        return mx.sum("keyhold_requests_total", route="user-keys", status=status)
    assert count(after, "404") > count(before, "404"), "the CLI never asked keyholdd"
    assert count(after, "200") == count(before, "200"), "keyholdd answered 200 to the CLI"
    assert stored_key(keyholdd, bw, m) is None, "a key was created"


# ------------------------------------------------------------------------------ flow 5


def test_flow5_second_tenant(version, bitwarden, keyholdd, cli):
    default_bw, acme_bw = bitwarden["default"], bitwarden["acme"]
    # One GUID in both installations, with different keys: only the tenant tells them apart.
    a = acme_bw.add(Member("acme-member", kc_key=os.urandom(32)))
    d = default_bw.add(Member("default-twin", kc_key=os.urandom(32), member_id=a.id))
    enrol(keyholdd, acme_bw, a, "acme")
    enrol(keyholdd, default_bw, d)

    c = new_cli(cli, version, acme_bw, "legacy", keyholdd, "acme")
    login_ok(c, a)
    assert_vault(c, a)

    # The acme issuer's token is refused by the default tenant (before any key lookup) ...
    r = keyholdd.client.get("/user-keys", token=acme_bw.token(a, "external"))
    assert_error(r, 401, "invalid_token")
    # ... so a CLI of acme pointed at the default tenant's URL gets no key.
    wrong = new_cli(cli, version, acme_bw, "legacy", keyholdd, "default")
    call = api_login(wrong, a)
    assert call.rc != 0, f"acme's member unlocked through the default tenant\n{call!r}"
    assert stored_key(keyholdd, default_bw, d) == d.kc_key
    assert stored_key(keyholdd, acme_bw, a, "acme") == a.kc_key


# ------------------------------------------------------------------------------ flow 6


def test_flow6_kill9_between_login_and_unlock(version, bitwarden, make_keyholdd, cli):
    """A master-password member logs in; keyholdd is killed; after the restart the CLI's
    unlock posts the key (conversion); keyholdd is killed right after acknowledging it; a
    fresh login after the second restart unlocks with that same key."""
    bw = bitwarden["default"]
    own = make_keyholdd()
    m = bw.add(Member("kill9-convert", password="kill nine " + os.urandom(4).hex(),
                      kc_url=f"https://127.0.0.1:{own.port}"))
    c = new_cli(cli, version, bw, "legacy", own)
    sso_login(c, m)

    own.kill()
    own.start()
    call = c.unlock_converting(m.password)
    assert call.rc == 0 and c.session, f"unlock with conversion failed\n{call!r}"
    own.kill()
    own.start()

    key = stored_key(own, bw, m)
    assert key == bwcrypto.master_key(m.password, m.email), "the acknowledged key was lost"
    fresh = new_cli(cli, version, bw, "legacy", own)
    login_ok(fresh, m)
    assert_vault(fresh, m)


def test_flow6_kill9_then_login_again(version, bitwarden, make_keyholdd, cli):
    """A Key Connector member logs in (the key is read); keyholdd is killed and restarted;
    the same CLI logs out and in again and unlocks with the same key."""
    bw = bitwarden["default"]
    own = make_keyholdd()
    m = bw.add(Member("kill9-login", kc_key=os.urandom(32),
                      kc_url=f"https://127.0.0.1:{own.port}"))
    enrol(own, bw, m)
    c = new_cli(cli, version, bw, "legacy", own)
    login_ok(c, m)

    own.kill()
    own.start()
    c.ok("logout")
    c.session = None
    login_ok(c, m)
    assert_vault(c, m)
    assert stored_key(own, bw, m) == m.kc_key
