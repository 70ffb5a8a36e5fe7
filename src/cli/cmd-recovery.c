/* keyhold recovery enrol: the member's user key encapsulated (type 4) to the tenant's
 * recovery key, so that an approver can later release it to a new device through keyhold
 * (spec/trusted-devices.md sections 6 and 8). */
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/member.h"
#include "keyhold/encstring.h"

int kh_cmd_recovery_enrol(struct kh_cli *cli) {
        const char *file = kh_cli_value(cli, "user-key-file");
        uint8_t user_key[KEYHOLD_USER_KEY_LEN];
        uint8_t *spki = NULL;
        size_t spki_len = 0;
        char *key = NULL, *sub = NULL;
        struct kh_member m;
        int r;

        r = kh_member_open(cli, KH_MEMBER_TOKEN, &m);
        if (r != 0)
                goto out;
        if (keyhold_token_claim(m.token, "sub", &sub) != 0) {
                r = kh_cli_usage_error(cli, "the token names no member (no sub claim)");
                goto out;
        }
        r = file ? kh_member_read_user_key(cli, file, user_key) : kh_member_unlock(cli, &m, user_key);
        if (r != 0)
                goto out;
        r = keyhold_organization_public_key(m.client, &spki, &spki_len);
        if (r < 0) {
                OPENSSL_cleanse(user_key, sizeof(user_key));
                r = kh_member_fail(cli, &m, r, "reading the recovery key");
                goto out;
        }
        r = keyhold_rsa_encapsulate(spki, spki_len, user_key, sizeof(user_key), &key);
        OPENSSL_cleanse(user_key, sizeof(user_key));
        if (r < 0) {
                r = kh_cli_fail(cli, "invalid_key", "the tenant's recovery key is no RSA-2048 key: %s",
                                keyhold_strerror(r));
                goto out;
        }
        r = keyhold_recovery_enrol(m.client, sub, key);
        if (r < 0) {
                r = kh_member_fail(cli, &m, r, "enrolling");
                goto out;
        }
        if (kh_cli_json(cli)) {
                json_auto_t *o = json_pack("{s:s, s:s, s:b}", "user", sub, "tenant", m.tenant,
                                           "enrolled", 1);
                r = kh_cli_print_json(cli, o);
        } else {
                printf("Member %s is enrolled in account recovery of tenant %s: an approver can "
                       "release the user key to a new device (keyhold approvals approve).\n",
                       sub, m.tenant);
                r = 0;
        }
out:
        free(spki);
        free(key);
        free(sub);
        kh_member_close(&m);
        return r;
}
