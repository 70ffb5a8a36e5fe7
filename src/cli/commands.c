#include "cli/commands.h"

#include <stdbool.h>
#include <string.h>

#include "config/dev-names.h"

/* The table. Rows of a group ("key ...") stay together, in the order help lists them. */
const struct kh_cli_command kh_cli_commands[] = {
        {
                .path = "key list",
                .operands = "",
                .summary = "the tenant's key versions, their state and use",
                .description =
                        "Lists every version of the tenant key: its state (active, archived,\n"
                        "retired, revoked, destroyed), algorithm, when it was created, how many\n"
                        "member records are sealed under it now, and how often it encrypted and\n"
                        "decrypted since it was created.",
                .example = "keyhold key list --tenant acme",
                .run = kh_cmd_key_list,
        },
        {
                .path = "key status",
                .operands = "",
                .summary = "the active version, every version and the re-encryption job",
                .description =
                        "Shows which version encrypts new records, the versions as `key list`\n"
                        "does, and the progress of the re-encryption job that a rekey starts.",
                .example = "keyhold key status --json",
                .run = kh_cmd_key_status,
        },
        {
                .path = "key rekey",
                .operands = "",
                .summary = "a new active version; older records move to it in the background",
                .description =
                        "Creates a new version of the tenant key in the key store with a new\n"
                        "DEK, and makes it active at once: new records are sealed under it. The\n"
                        "older active version becomes archived (it still decrypts), and a\n"
                        "background job re-encrypts every record under archived versions into\n"
                        "the new one while serving goes on; `key status` shows its progress. The\n"
                        "job survives restarts and crashes. A rekey is refused (job_running)\n"
                        "while records of an earlier one are still to move. With --wait the\n"
                        "command stays until the job is done, with a progress bar on a terminal.",
                .options = (const struct kh_cli_option[]) {
                        { "algorithm", 0, "ALG", "rsa-3072 or rsa-4096 (default: [keystore] rsa_bits)" },
                        { "wait", 0, NULL, "wait for the re-encryption job to finish" },
                        { 0 },
                },
                .example = "keyhold key rekey --algorithm rsa-4096 --wait",
                .run = kh_cmd_key_rekey,
        },
        {
                .path = "key retire",
                .operands = "V",
                .summary = "an archived version that no record uses any more stops decrypting",
                .description =
                        "Retires version V: it no longer decrypts anything. Refused with\n"
                        "records_remain (and the count) while records are still sealed under it\n"
                        "(wait for the job of `key rekey`), and with last_active for the active\n"
                        "version. A retired version can then be destroyed.",
                .example = "keyhold key retire 1",
                .run = kh_cmd_key_retire,
        },
        {
                .path = "key destroy",
                .operands = "V",
                .summary = "delete a retired version's tenant key for good (asks first)",
                .description =
                        "Destroys retired version V: its tenant key is deleted from the key store\n"
                        "(a file store overwrites the key file first) and its wrapped DEK from\n"
                        "the database. Irreversible and audited. On a terminal it asks you to\n"
                        "type the version number; --yes skips that; with neither a terminal nor\n"
                        "--yes it refuses and changes nothing. Refused (not_retired) for a\n"
                        "version that is not retired.",
                .options = (const struct kh_cli_option[]) {
                        { "yes", 0, NULL, "do not ask for confirmation" },
                        { 0 },
                },
                .example = "keyhold key destroy 1 --yes",
                .run = kh_cmd_key_destroy,
        },
        {
                .path = "key revoke",
                .operands = "[V]",
                .summary = "a version encrypts and decrypts nothing; --all: the kill switch",
                .description =
                        "Revokes version V: members whose record is sealed under it get 403\n"
                        "key_revoked, and the re-encryption job skips its records. `reinstate V`\n"
                        "undoes it. The active version is refused (last_active) unless --all:\n"
                        "the tenant kill switch, which revokes every active and archived version\n"
                        "at once, so that every key read and write of the tenant is refused\n"
                        "until `key reinstate --all`.",
                .options = (const struct kh_cli_option[]) {
                        { "all", 0, NULL, "revoke every active and archived version (kill switch)" },
                        { 0 },
                },
                .example = "keyhold key revoke 2",
                .run = kh_cmd_key_revoke,
        },
        {
                .path = "key reinstate",
                .operands = "[V]",
                .summary = "a revoked version returns to its former state; --all: every one",
                .description =
                        "Returns revoked version V to the state it had before (active or\n"
                        "archived). With --all, every revoked version of the tenant: the undo of\n"
                        "`key revoke --all`. Refused (not_revoked) for a version that is not\n"
                        "revoked.",
                .options = (const struct kh_cli_option[]) {
                        { "all", 0, NULL, "reinstate every revoked version" },
                        { 0 },
                },
                .example = "keyhold key reinstate --all",
                .run = kh_cmd_key_reinstate,
        },
        {
                .path = "incident",
                .operands = "PLAYBOOK",
                .summary = "breach response: leaked, unauthorized-use, hsm-vulnerability, algorithm-weakness",
                .description =
                        "Prints the breach-response playbook of DESIGN.md for key version V of\n"
                        "the tenant, with each step's status on the server now (done, to do, not\n"
                        "possible and why); nothing changes without --execute. PLAYBOOK is:\n"
                        "  leaked              rekey, wait until the job has moved every record\n"
                        "                      off V, revoke V, retire it, destroy it\n"
                        "  unauthorized-use    a report of every use of V in the audit chain\n"
                        "                      (reads, writes, refused requests) by actor, with\n"
                        "                      count, first and last time and clients; no change\n"
                        "  algorithm-weakness  rekey to --algorithm (default rsa-4096), wait for\n"
                        "                      the job, retire V\n"
                        "  hsm-vulnerability   move to another key store: the offline `keyhold\n"
                        "                      keystore migrate` first (keyholdd stopped), then\n"
                        "                      on the new server rekey there, wait for the job,\n"
                        "                      retire and destroy every version the old store\n"
                        "                      held; --refuse-writes engages the kill switch\n"
                        "                      first, which refuses key reads too\n"
                        "--execute runs the steps not done yet, in order, each an audited admin\n"
                        "route. On a terminal it asks you to type the version number; --yes\n"
                        "skips that; with neither it refuses and changes nothing. Whether a step\n"
                        "is done is read from the server, so an interrupted run continues when\n"
                        "run again. Here --version is the key version; `keyhold --version`\n"
                        "before a command prints keyhold's own.",
                .options = (const struct kh_cli_option[]) {
                        { "version", 0, "V", "the key version concerned (keyhold key list)" },
                        { "execute", 0, NULL, "run the steps (default: a dry run)" },
                        { "yes", 0, NULL, "with --execute: do not ask for confirmation" },
                        { "algorithm", 0, "ALG", "the rekey's rsa-3072 or rsa-4096 (leaked, algorithm-weakness)" },
                        { "since", 0, "TIME", "unauthorized-use: from this UTC time or date on" },
                        { "until", 0, "TIME", "unauthorized-use: up to this UTC time or date" },
                        { "refuse-writes", 0, NULL, "hsm-vulnerability: engage the kill switch" },
                        { 0 },
                },
                .example = "keyhold incident leaked --version 3 --execute",
                .run = kh_cmd_incident,
        },
        {
                .path = "keystore migrate",
                .operands = "",
                .summary = "move every tenant key to another key store (offline; file -> HSM, HSM -> HSM)",
                .description =
                        "Moves the tenant keys of every tenant of --config's database to the key\n"
                        "store --to's [keystore] names, offline: stop keyholdd first (refused\n"
                        "with server_running while one serves the database). For each version\n"
                        "that keeps a DEK (active, archived, revoked) the new store gets a key of\n"
                        "the same version and size, and the DEK is unwrapped by the old store,\n"
                        "wrapped under the new key and signed by it, one transaction per version;\n"
                        "records are not touched. Retired and destroyed versions need no key.\n"
                        "Secrets come as each configuration says (pin_file, master_key_file, or\n"
                        "the environment, which applies to both). Killed at any point, the same\n"
                        "command finishes the job; versions already moved are skipped.\n"
                        "\n"
                        "The account-recovery key cannot leave a key store: the new one makes a\n"
                        "new recovery key, and members enrolled under the old one must enrol\n"
                        "again (the count is printed). The new store signs audit checkpoints\n"
                        "with its own key: --audit-keys DIR saves the old store's audit public\n"
                        "keys (server.pem, tenant-ID.pem) to verify older checkpoints.\n"
                        "keyholdd records each moved version (keystore.migrate) at its next\n"
                        "start on --to. Then `keyhold incident hsm-vulnerability --version V\n"
                        "--execute` rekeys in the new store, re-encrypts and destroys the old\n"
                        "versions. With --json: {\"tenants\", \"versions\", \"moved\", \"skipped\",\n"
                        "\"no_key\", \"recovery_enrolments_affected\", \"from\", \"to\",\n"
                        "\"audit_keys\", \"per_tenant\"}.",
                .options = (const struct kh_cli_option[]) {
                        { "to", 0, "NEWCONF", "the configuration whose [keystore] the keys move to" },
                        { "config", 0, "OLDCONF", "keyholdd's configuration now (default /etc/keyhold/keyhold.conf)" },
                        { "audit-keys", 0, "DIR", "save the old store's audit public keys (PEM) here" },
                        { 0 },
                },
                .example = "keyhold keystore migrate --config /etc/keyhold/keyhold.conf "
                           "--to /etc/keyhold/keyhold-hsm.conf --audit-keys old-audit-keys",
                .run = kh_cmd_keystore_migrate,
        },
        {
                .path = "seal",
                .operands = "",
                .summary = "the emergency brake: drop every key from memory (operator)",
                .description =
                        "Drops the key store's master secret and every unwrapped DEK from the\n"
                        "server's memory (wiped). Every key route answers 503 sealed, and\n"
                        "/health 503, until `keyhold unseal`; the seal is recorded, so a restart\n"
                        "comes back sealed. Admin socket only.",
                .example = "keyhold seal",
                .run = kh_cmd_seal,
        },
        {
                .path = "unseal",
                .operands = "",
                .summary = "open the key store again with its passphrase or master key (operator)",
                .description =
                        "Gives the server the key store's secret again: the master key file (32\n"
                        "raw bytes), a file holding the passphrase (one trailing newline is\n"
                        "dropped), or the passphrase typed on the terminal. For an HSM (pkcs11)\n"
                        "key store the secret is the token's user PIN, from either file (one\n"
                        "trailing newline dropped) or the terminal. A wrong secret or PIN is\n"
                        "refused (wrong_secret) and the server stays sealed; a locked PIN is\n"
                        "pkcs11_pin_locked. Also how a server whose configuration holds no\n"
                        "secret (no master key, passphrase or PIN) gets one. Admin socket only.",
                .options = (const struct kh_cli_option[]) {
                        { "master-key-file", 0, "FILE", "the 32-byte master key file (HSM: the PIN)" },
                        { "passphrase-file", 0, "FILE", "a file holding the passphrase (HSM: the PIN)" },
                        { 0 },
                },
                .example = "keyhold unseal --master-key-file /etc/keyhold/master.key",
                .run = kh_cmd_unseal,
        },
        {
                .path = "audit tail",
                .operands = "",
                .summary = "the last audit records; -f follows new ones",
                .description =
                        "Prints the last N records of the tenant's audit chain, one line each\n"
                        "(with --json, one JSON object per line). With -f it keeps asking for\n"
                        "new records every second until interrupted (Ctrl-C), then exits 0.",
                .options = (const struct kh_cli_option[]) {
                        { "lines", 'n', "N", "how many records (1..10000, default 20)" },
                        { "follow", 'f', NULL, "keep printing new records as they come" },
                        { "server", 0, NULL, "the server's own chain (admin socket only)" },
                        { 0 },
                },
                .example = "keyhold audit tail -n 50 -f",
                .run = kh_cmd_audit_tail,
        },
        {
                .path = "audit export",
                .operands = "FILE",
                .summary = "write the audit chain to FILE as JSON Lines",
                .description =
                        "Writes the tenant's audit chain to FILE, one record per line, as\n"
                        "`keyhold audit verify` reads it (docs/audit.md). FILE appears only once\n"
                        "complete (mode 0600); an existing FILE is kept unless --force. FILE '-'\n"
                        "writes to stdout. Progress shows on stderr when it is a terminal.",
                .options = (const struct kh_cli_option[]) {
                        { "since", 0, "SEQ", "the first record to export (default 1)" },
                        { "server", 0, NULL, "the server's own chain (admin socket only)" },
                        { "force", 0, NULL, "replace FILE if it exists" },
                        { 0 },
                },
                .example = "keyhold audit export acme-audit.jsonl --tenant acme",
                .run = kh_cmd_audit_export,
        },
        {
                .path = "audit public-key",
                .operands = "",
                .summary = "the PEM public key that verifies the audit chain's checkpoints",
                .description =
                        "Prints the public half of the tenant's audit signing key as PEM, for\n"
                        "`keyhold audit verify FILE --public-key PEM`. The private half never\n"
                        "leaves the key store.",
                .options = (const struct kh_cli_option[]) {
                        { "server", 0, NULL, "the key of the server's own chain (admin socket only)" },
                        { 0 },
                },
                .example = "keyhold audit public-key --tenant acme > acme-audit.pem",
                .run = kh_cmd_audit_public_key,
        },
        {
                .path = "audit verify",
                .operands = "FILE",
                .summary = "check an exported audit chain offline",
                .description =
                        "Checks an export (`keyhold audit export`; FILE '-' reads stdin) against\n"
                        "the chain's public key, without the server: every record's fields,\n"
                        "sequence and hash, and every checkpoint's signature. Names the first\n"
                        "record that fails and exits 1; exits 0 only for an intact chain. Records\n"
                        "after the last checkpoint are reported as not yet signed.\n"
                        "\n"
                        "A file alone cannot show that records were cut from its start or its\n"
                        "end. Say where the chain must start (--first-seq: 1 for a whole chain,\n"
                        "N for an export --since N) and the seq it must reach (--through-seq: the\n"
                        "head seq that `audit export` reported or `audit tail` shows), and a file\n"
                        "that starts elsewhere or ends before it fails.",
                .options = (const struct kh_cli_option[]) {
                        { "public-key", 0, "PEM", "the chain's public key (`audit public-key`)" },
                        { "first-seq", 0, "N", "the seq the file's first record must carry" },
                        { "through-seq", 0, "N", "the seq the file must reach at least" },
                        { 0 },
                },
                .example = "keyhold audit verify acme-audit.jsonl --public-key acme-audit.pem "
                           "--first-seq 1",
                .run = kh_cmd_audit_verify,
        },
        {
                .path = "backup create",
                .operands = "FILE",
                .summary = "write a backup of the whole server to FILE (operator)",
                .description =
                        "Asks keyholdd, through the admin socket only, for a backup of the whole\n"
                        "server: a consistent snapshot of the database taken while it serves, and\n"
                        "the key store's files (every key in them already sealed), the whole file\n"
                        "encrypted and authenticated under a key that only the same key store\n"
                        "secret derives (docs/backup.md). FILE appears only once complete (mode\n"
                        "0600); an existing FILE is kept unless --force. Prints the tenants and\n"
                        "records it holds and its SHA-256. Progress shows on stderr on a terminal.",
                .options = (const struct kh_cli_option[]) {
                        { "force", 0, NULL, "replace FILE if it exists" },
                        { 0 },
                },
                .example = "keyhold backup create /var/backups/keyhold-2024-05-01.khb",
                .run = kh_cmd_backup_create,
        },
        {
                .path = "backup verify",
                .operands = "FILE",
                .summary = "check a backup offline: intact, complete, opened by this secret",
                .description =
                        "Reads the whole backup without a server and without keeping anything:\n"
                        "every chunk's authentication, the manifest, the database snapshot\n"
                        "(SQLite's own check, the schema, the record counts against the manifest)\n"
                        "and every key-store file. Only the key store's secret opens a backup:\n"
                        "give the master key file, a file holding the passphrase, or the server's\n"
                        "--config (its master_key_file or KEYHOLD_KEYSTORE_PASSPHRASE); on a\n"
                        "terminal it asks for the passphrase otherwise. A backup of an HSM\n"
                        "(pkcs11) key store needs --config (module, token, key label prefix; the\n"
                        "PIN from its pin_file, or from --passphrase-file/--master-key-file): the\n"
                        "token must hold every key the backup names. Exits 1 naming what is\n"
                        "wrong (code wrong_secret, damaged, truncated, not_a_backup,\n"
                        "missing_key with the label of a key the token lacks).",
                .options = (const struct kh_cli_option[]) {
                        { "master-key-file", 0, "F", "the key store's 32-byte master key file" },
                        { "passphrase-file", 0, "F", "a file holding the key store's passphrase" },
                        { "config", 0, "FILE", "keyholdd's configuration: its secret, or its HSM" },
                        { 0 },
                },
                .example = "keyhold backup verify keyhold.khb --master-key-file /etc/keyhold/master.key",
                .run = kh_cmd_backup_verify,
        },
        {
                .path = "backup restore",
                .operands = "FILE",
                .summary = "rebuild a data folder from a backup, offline, into an empty DIR",
                .description =
                        "Checks the backup as `backup verify` does and writes DIR/keyhold.db and\n"
                        "DIR/keystore/ (files 0600, folders 0700; never the master secret). DIR\n"
                        "must be absent or empty. The files are written beside DIR first and\n"
                        "moved into place only once everything checked, so a failure or a crash\n"
                        "leaves DIR as it was and the command can be run again. Then point\n"
                        "[storage] path and [keystore] path there and start keyholdd with the\n"
                        "same master key file or passphrase. A backup of an HSM (pkcs11) key\n"
                        "store restores DIR/keyhold.db only, against the same token (--config,\n"
                        "as for verify). With --into-storage the database goes into the\n"
                        "PostgreSQL database of --config's [storage] instead, in one\n"
                        "transaction: it must hold no keyhold data and no keyholdd may be\n"
                        "connected (exit 1, nothing written otherwise); DIR gets keystore/ only.",
                .options = (const struct kh_cli_option[]) {
                        { "data", 0, "DIR", "the folder to restore into (absent or empty)" },
                        { "master-key-file", 0, "F", "the key store's 32-byte master key file" },
                        { "passphrase-file", 0, "F", "a file holding the key store's passphrase" },
                        { "config", 0, "FILE", "keyholdd's configuration: its secret, or its HSM" },
                        { "into-storage", 0, NULL, "load the database into --config's PostgreSQL "
                                                   "[storage] (an empty database), not DIR" },
                        { 0 },
                },
                .example = "keyhold backup restore keyhold.khb --data /var/lib/keyhold-restored "
                           "--master-key-file /etc/keyhold/master.key",
                .run = kh_cmd_backup_restore,
        },
        {
                .path = "device trust",
                .operands = "",
                .summary = "this machine becomes a trusted device of the member",
                .description =
                        "Registers this machine as a device of the member whose token is given\n"
                        "(--url, --token), makes a device key and an RSA-2048 key pair, and\n"
                        "stores on the server the user key encapsulated to the device key pair\n"
                        "and the key pair wrapped (Bitwarden's trusted-device values). The device\n"
                        "key stays in the state folder (--state, file mode 0600) with the device's\n"
                        "identifier, made on first use. The user key comes from --user-key-file:\n"
                        "base64 of the 64-byte user key ('-' reads stdin). Run again to renew the\n"
                        "trust.",
                .options = (const struct kh_cli_option[]) {
                        { "user-key-file", 0, "FILE", "the member's user key (base64; - for stdin)" },
                        { "name", 0, "NAME", "the device's name (default: keyhold CLI on HOST)" },
                        { 0 },
                },
                .example = "keyhold device trust --user-key-file user.key --url https://127.0.0.1:8443 "
                           "--token-file member.jwt",
                .run = kh_cmd_device_trust,
        },
        {
                .path = "device unlock",
                .operands = "",
                .summary = "the user key from this device's trust",
                .description =
                        "Reads this device's trust values from the server and opens them with the\n"
                        "device key of the state folder: prints the user key (base64 of 64\n"
                        "bytes), or writes it to --out FILE (mode 0600). Fails (exit 1,\n"
                        "not_trusted) when this device was never trusted, was untrusted or is\n"
                        "unknown to the server.",
                .options = (const struct kh_cli_option[]) {
                        { "out", 0, "FILE", "write the user key to FILE (mode 0600)" },
                        { 0 },
                },
                .example = "keyhold device unlock --out user.key --url https://127.0.0.1:8443 "
                           "--token-file member.jwt",
                .run = kh_cmd_device_unlock,
        },
        {
                .path = "device rotate",
                .operands = "",
                .summary = "after a user-key rotation: the member's trusted devices open the new key",
                .description =
                        "Run on a trusted device when the member's user key changes. Unlocks the\n"
                        "current user key with this device's trust (as `device unlock`), reads the\n"
                        "new one from --new-user-key-file (base64 of 64 bytes; '-' reads stdin),\n"
                        "and re-wraps every trusted device of the member for it: this device from\n"
                        "its own key pair, every other one from its public key, which the current\n"
                        "user key opens. One update-trust request sends them all; nothing changes\n"
                        "on the server before it. A trusted device whose public key does not open\n"
                        "under the current key (wrapped under another user key) is left out and\n"
                        "named; it keeps its old values unless --untrust-unlisted, which untrusts\n"
                        "it (and any trusted device not re-wrapped). Untrusted devices stay so.\n"
                        "Store the new key where the member's clients get it (Key Connector) too.\n"
                        "With --json: {\"rotated\": N (this device included), \"skipped\": [ids],\n"
                        "\"untrusted_unlisted\": bool}.",
                .options = (const struct kh_cli_option[]) {
                        { "new-user-key-file", 0, "FILE", "the new user key (base64; - for stdin)" },
                        { "untrust-unlisted", 0, NULL, "untrust the trusted devices not re-wrapped" },
                        { 0 },
                },
                .example = "keyhold device rotate --new-user-key-file new-user.key --url "
                           "https://127.0.0.1:8443 --token-file member.jwt",
                .run = kh_cmd_device_rotate,
        },
        {
                .path = "device list",
                .operands = "",
                .summary = "the member's devices and whether each is trusted",
                .description =
                        "Lists the devices of the member whose token is given: id, identifier,\n"
                        "name, type, trusted, created. With --user GUID, an admin lists a\n"
                        "member's devices instead (the admin socket, or --url with an admin\n"
                        "token).",
                .options = (const struct kh_cli_option[]) {
                        { "user", 0, "GUID", "admin: the member whose devices to list" },
                        { 0 },
                },
                .example = "keyhold device list --user 3fa85f64-5717-4562-b3fc-2c963f66afa6",
                .run = kh_cmd_device_list,
        },
        {
                .path = "device untrust",
                .operands = "DEVICE",
                .summary = "a device loses its trust: it can no longer unlock the user key",
                .description =
                        "Clears the trust values of DEVICE (its id or its identifier, as `device\n"
                        "list` shows them) on the server: that device can no longer unlock the\n"
                        "user key and must ask again (login-request). The member's own device\n"
                        "with the member's token; with --user GUID an admin untrusts a member's\n"
                        "device (the admin socket, or --url with an admin token).",
                .options = (const struct kh_cli_option[]) {
                        { "user", 0, "GUID", "admin: the member whose device to untrust" },
                        { 0 },
                },
                .example = "keyhold device untrust --user 3fa85f64-5717-4562-b3fc-2c963f66afa6 "
                           "0d6bd8f6-4bd3-4a7d-9c0d-5d0f9f0c3a11",
                .run = kh_cmd_device_untrust,
        },
        {
                .path = "login-request create",
                .operands = "",
                .summary = "ask a trusted device (or, --admin, an approver) for the user key",
                .description =
                        "Makes a login request for this device: an ephemeral RSA-2048 key pair\n"
                        "and a 25-character access code, kept in the state folder (mode 0600)\n"
                        "until the answer comes. Prints the request id and the fingerprint phrase,\n"
                        "which the approving side shows too. The account is --email, else the\n"
                        "email claim of the member token. With a token, this device is registered\n"
                        "first if the server does not know it. --admin asks the tenant's\n"
                        "approvers instead (keyhold approvals approve; needs the member token\n"
                        "and the member's recovery enrolment).",
                .options = (const struct kh_cli_option[]) {
                        { "email", 0, "EMAIL", "the account (default: the token's email claim)" },
                        { "name", 0, "NAME", "this device's name when it is registered" },
                        { "admin", 0, NULL, "ask for admin approval instead of a trusted device" },
                        { 0 },
                },
                .example = "keyhold login-request create --url https://127.0.0.1:8443 "
                           "--token-file member.jwt",
                .run = kh_cmd_login_request_create,
        },
        {
                .path = "login-request wait",
                .operands = "[ID]",
                .summary = "wait for the answer; print the user key once approved",
                .description =
                        "Asks the server for the answer to request ID (default: this device's\n"
                        "latest) every second. Once approved, opens the key with the request's\n"
                        "private key, prints the user key (base64) or writes it to --out FILE\n"
                        "(mode 0600), and deletes the request's files. Exits 1 with denied or\n"
                        "expired (the files go too), or timeout after --timeout seconds (default\n"
                        "900; 0 asks once; the request stays).",
                .options = (const struct kh_cli_option[]) {
                        { "timeout", 0, "S", "give up after S seconds (default 900)" },
                        { "out", 0, "FILE", "write the user key to FILE (mode 0600)" },
                        { 0 },
                },
                .example = "keyhold login-request wait --timeout 300 --out user.key "
                           "--url https://127.0.0.1:8443",
                .run = kh_cmd_login_request_wait,
        },
        {
                .path = "login-request approve",
                .operands = "ID",
                .summary = "from a trusted device: give request ID the user key",
                .description =
                        "Reads the member's request ID, shows its fingerprint phrase (compare it\n"
                        "with the one the requesting device printed; --fingerprint makes the\n"
                        "command refuse unless they match), opens the user key with this\n"
                        "device's trust, encapsulates it to the request's public key (type 4)\n"
                        "and answers the request.",
                .options = (const struct kh_cli_option[]) {
                        { "fingerprint", 0, "PHRASE", "approve only if the request shows this phrase" },
                        { 0 },
                },
                .example = "keyhold login-request approve 6c1b7c52-1d0e-4d42-9a57-0a8c9d7e2f10 "
                           "--url https://127.0.0.1:8443 --token-file member.jwt",
                .run = kh_cmd_login_request_approve,
        },
        {
                .path = "login-request deny",
                .operands = "ID",
                .summary = "refuse request ID",
                .description =
                        "Answers the member's request ID with a denial: the requesting device's\n"
                        "`login-request wait` exits 1 with denied.",
                .example = "keyhold login-request deny 6c1b7c52-1d0e-4d42-9a57-0a8c9d7e2f10 "
                           "--url https://127.0.0.1:8443 --token-file member.jwt",
                .run = kh_cmd_login_request_deny,
        },
        {
                .path = "recovery enrol",
                .operands = "",
                .summary = "enrol the member in account recovery (admin approval)",
                .description =
                        "Encapsulates the member's user key (type 4) to the tenant's recovery\n"
                        "key and stores it on the server, so that an approver can later release\n"
                        "it to a new device of the member (`login-request create --admin`, then\n"
                        "`keyhold approvals approve`). The user key is --user-key-file, else the\n"
                        "one this trusted device unlocks.",
                .options = (const struct kh_cli_option[]) {
                        { "user-key-file", 0, "FILE", "the user key (base64; - for stdin)" },
                        { 0 },
                },
                .example = "keyhold recovery enrol --url https://127.0.0.1:8443 --token-file member.jwt",
                .run = kh_cmd_recovery_enrol,
        },
        {
                .path = "member remove",
                .operands = "GUID",
                .summary = "a member leaves: key, devices, requests and enrolment deleted",
                .description =
                        "Deletes at once everything the tenant keeps for member GUID: the Key\n"
                        "Connector key, the devices with their trust, login and approval\n"
                        "requests, and the recovery enrolment. Irreversible and audited. Prints\n"
                        "how many of each were deleted.",
                .example = "keyhold member remove 3fa85f64-5717-4562-b3fc-2c963f66afa6",
                .run = kh_cmd_member_remove,
        },
        {
                .path = "import bitwarden-kc",
                .operands = "",
                .summary = "move every member key of a Bitwarden Key Connector into the tenant",
                .description =
                        "Reads a Key Connector database (only reads it: SQLite opened immutable,\n"
                        "PostgreSQL in a read-only transaction, the JSON file never rewritten),\n"
                        "unwraps its data key with the Key Connector's PFX (RSA-OAEP SHA-1), an\n"
                        "HSM key (--pkcs11-*) or a data-key file you unwrapped yourself, decrypts\n"
                        "every user key and has keyholdd store it for that member in the tenant,\n"
                        "under its own envelope. Where the database holds several data-key rows\n"
                        "(Key Connector's creation race) each record is opened with the one that\n"
                        "opens it. A key keyhold already holds is skipped when it is the same and\n"
                        "reported as a conflict, left alone, when it differs (--overwrite replaces\n"
                        "it). Then every key is read back through keyholdd and compared with the\n"
                        "source. Records that cannot be imported are listed with the reason; exit\n"
                        "1 while any failed or conflicts remain. Safe to run again: an interrupted\n"
                        "import finishes without duplicates. --dry-run decrypts everything and\n"
                        "says what would happen, writing nothing. With --json: {\"imported\",\n"
                        "\"skipped\", \"conflicts\", \"failed\", \"overwritten\", \"records\",\n"
                        "\"verified\", \"data_keys\", \"problems\", \"conflict_ids\", ...}.\n"
                        "The PIN may come from KEYHOLD_PKCS11_PIN instead of --pkcs11-pin-file.",
                .options = (const struct kh_cli_option[]) {
                        { "database", 0, "SOURCE", "json:PATH, sqlite:PATH or postgresql:CONNINFO" },
                        { "pfx", 0, "FILE", "the Key Connector's certificate and key (PKCS#12)" },
                        { "pfx-password-file", 0, "FILE", "the PFX's password" },
                        { "data-key-file", 0, "FILE", "the data key, unwrapped (32 bytes, or base64)" },
                        { "pkcs11-module", 0, "PATH", "unwrap on an HSM: its PKCS#11 module" },
                        { "pkcs11-token", 0, "LABEL", "the token's label" },
                        { "pkcs11-key-label", 0, "LABEL", "the RSA private key's label" },
                        { "pkcs11-pin-file", 0, "FILE", "the token's user PIN" },
                        { "dry-run", 0, NULL, "decrypt and compare; write nothing" },
                        { "overwrite", 0, NULL, "replace a different key keyhold already holds" },
                        { 0 },
                },
                .example = "keyhold import bitwarden-kc --tenant acme --database "
                           "sqlite:/etc/bitwarden/keyconnector.db --pfx key.pfx "
                           "--pfx-password-file pfx.pass",
                .run = kh_cmd_import_bitwarden_kc,
        },
        {
                .path = "approvals list",
                .operands = "",
                .summary = "pending admin-approval requests of the tenant, with fingerprint phrases",
                .description =
                        "Lists the tenant's pending, unexpired admin-approval requests: a member's\n"
                        "new device asks for the member's user key. Compare the fingerprint phrase\n"
                        "with the one the member's device shows before approving. APPROVALS shows\n"
                        "how many approvers approved of how many the tenant needs\n"
                        "(approval_quorum). With --json: the server's list items (\"id\",\n"
                        "\"userId\", \"email\", \"requestDeviceIdentifier\", \"creationDate\",\n"
                        "\"fingerprint\", \"approvals\", \"needed\", ...).",
                .example = "keyhold approvals list --tenant acme",
                .run = kh_cmd_approvals_list,
        },
        {
                .path = "approvals approve",
                .operands = "[ID]",
                .summary = "approve a request; the key is made from the member's recovery enrolment",
                .description =
                        "Approves admin-approval request ID (or, with --all, every pending one).\n"
                        "keyholdd encrypts the member's user key to the requesting device, from\n"
                        "the member's account-recovery enrolment (refused with not_enrolled if\n"
                        "there is none). Only the tenant's approvers may answer (not_approver).\n"
                        "With approval_quorum = 2 the first approval is recorded and the request\n"
                        "waits for a second, different approver. With --json: {\"id\", \"status\"}\n"
                        "(\"approved\", or \"pending\" with \"approvals\" and \"needed\"); with --all a\n"
                        "list of those, and {\"id\", \"code\", \"message\"} for a refused one.",
                .options = (const struct kh_cli_option[]) {
                        { "all", 0, NULL, "every pending request of the tenant" },
                        { 0 },
                },
                .example = "keyhold approvals approve 3fa85f64-5717-4562-b3fc-2c963f66afa6",
                .run = kh_cmd_approvals_approve,
        },
        {
                .path = "approvals deny",
                .operands = "[ID]",
                .summary = "deny a request (or --all); a deny by any approver ends it",
                .description =
                        "Denies admin-approval request ID (or, with --all, every pending one).\n"
                        "The member's device sees the request as denied. With --json: {\"id\",\n"
                        "\"status\": \"denied\"}; with --all a list of those.",
                .options = (const struct kh_cli_option[]) {
                        { "all", 0, NULL, "every pending request of the tenant" },
                        { 0 },
                },
                .example = "keyhold approvals deny 3fa85f64-5717-4562-b3fc-2c963f66afa6",
                .run = kh_cmd_approvals_deny,
        },
        {
                .path = "dev-token",
                .operands = "",
                .summary = "a bearer token from a `keyholdd --dev` data folder (dev mode only)",
                .description =
                        "Prints a token signed by the dev issuer of a `keyholdd --dev` data\n"
                        "folder, with the claims a Bitwarden client's token carries (scope api,\n"
                        "amr external). With --json: {\"token\": ..., \"expires\": ...}.",
                .options = (const struct kh_cli_option[]) {
                        { "user", 0, "GUID", "the member's user id (sub claim)" },
                        { "data", 0, "DIR", "the dev data folder (default " KH_DEV_DATA_DEFAULT ")" },
                        { "ttl", 0, "SECONDS", "lifetime, 1..86400 (default 3600)" },
                        { "email", 0, "EMAIL", "the email claim (default dev@keyhold.invalid)" },
                        { 0 },
                },
                .example = "keyhold dev-token --user 3fa85f64-5717-4562-b3fc-2c963f66afa6",
                .run = kh_cmd_dev_token,
        },
        {
                .path = "init",
                .operands = "",
                .summary = "first run of a production install: master key, data folder, TLS",
                .description =
                        "Creates what a package never ships: the master key (32 random bytes,\n"
                        "mode 0600, owned by --user) as master.key next to the configuration\n"
                        "file, the data folder (mode 0700, owned by --user) with keystore/ in\n"
                        "it, and with --self-signed a TLS key (tls.key, 0600) and a self-signed\n"
                        "certificate (tls.crt, 0644) for this host's name and 127.0.0.1. Then it\n"
                        "prints what is left to do: the issuer and CORS origin in the\n"
                        "configuration, starting the service, checking /health. It never\n"
                        "overwrites: an existing master key is kept (exit 0 if it holds 32 bytes,\n"
                        "1 if not), so does an existing TLS key or certificate. Offline; run as\n"
                        "root, or as --user itself with paths you may write. With --json:\n"
                        "{\"master_key_file\", \"data\", \"tls_cert\" (or null), \"created\": [paths]}.",
                .options = (const struct kh_cli_option[]) {
                        { "data", 0, "DIR", "the data folder (default /var/lib/keyhold)" },
                        { "config", 0, "FILE", "keyholdd's configuration; the secrets go next to it (default /etc/keyhold/keyhold.conf)" },
                        { "self-signed", 0, NULL, "also make a TLS key and self-signed certificate" },
                        { "user", 0, "NAME", "who owns the files: keyholdd's user (default keyhold)" },
                        { 0 },
                },
                .example = "keyhold init --self-signed",
                .run = kh_cmd_init,
        },
};

const size_t kh_cli_commands_n = sizeof(kh_cli_commands) / sizeof(kh_cli_commands[0]);

/* Whether path starts with the words words[0..n), each followed by a space or the end;
 * *ret_rest (if not NULL) points after them. */
static bool path_starts_with(const char *path, const char *const *words, size_t n,
                             const char **ret_rest) {
        const char *p = path;

        for (size_t i = 0; i < n; i++) {
                size_t len = strlen(words[i]);

                if (i > 0) {
                        if (*p != ' ')
                                return false;
                        p++;
                }
                if (len == 0 || strncmp(p, words[i], len) != 0 || (p[len] != ' ' && p[len] != 0))
                        return false;
                p += len;
        }
        if (ret_rest)
                *ret_rest = p;
        return true;
}

bool kh_cli_command_has_prefix(const struct kh_cli_command *cmd, const char *const *words,
                               size_t n) {
        return path_starts_with(cmd->path, words, n, NULL);
}

const struct kh_cli_command *kh_cli_command_find(const char *const *words, size_t n) {
        const char *rest;

        for (size_t i = 0; i < kh_cli_commands_n; i++)
                if (path_starts_with(kh_cli_commands[i].path, words, n, &rest) && *rest == 0)
                        return &kh_cli_commands[i];
        return NULL;
}

bool kh_cli_command_prefix_exists(const char *const *words, size_t n) {
        for (size_t i = 0; i < kh_cli_commands_n; i++)
                if (path_starts_with(kh_cli_commands[i].path, words, n, NULL))
                        return true;
        return false;
}

const struct kh_cli_option *kh_cli_command_option(const struct kh_cli_command *cmd,
                                                  const char *name) {
        for (const struct kh_cli_option *o = cmd->options; o && o->name; o++)
                if (strcmp(o->name, name) == 0)
                        return o;
        return NULL;
}

void kh_cli_command_operands(const struct kh_cli_command *cmd, size_t *ret_min, size_t *ret_max) {
        size_t min = 0, max = 0;
        bool in_word = false;

        for (const char *p = cmd->operands; *p; p++) {
                if (*p == ' ') {
                        in_word = false;
                        continue;
                }
                if (!in_word) {
                        max++;
                        if (*p != '[')
                                min++;
                }
                in_word = true;
        }
        *ret_min = min;
        *ret_max = max;
}
