/* A PKCS#11 module for one test (test_keystore_pkcs11_lifecycle.py): SoftHSM2 itself, whose
 * every function it hands on, except that C_Login as the user answers CKR_PIN_LOCKED.
 * SoftHSM2 2.6 never locks a user PIN (it counts no failures), so the token state a real
 * HSM reaches after too many wrong PINs is made here; nothing else is changed. The real
 * module is KH_TEST_P11_MODULE, else Debian's SoftHSM2. Test-only: never installed. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret);

static CK_FUNCTION_LIST shim;
static CK_FUNCTION_LIST *real;

static CK_RV locked_login(CK_SESSION_HANDLE session, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin,
                          CK_ULONG len) {
        if (user == CKU_USER)
                return CKR_PIN_LOCKED;
        return real->C_Login(session, user, pin, len);
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret) {
        const char *path = getenv("KH_TEST_P11_MODULE");
        CK_C_GetFunctionList get;
        void *dl, *sym;
        CK_RV rv;

        if (!ret)
                return CKR_ARGUMENTS_BAD;
        if (!real) {
                dl = dlopen(path && *path ? path : "/usr/lib/softhsm/libsofthsm2.so",
                            RTLD_NOW | RTLD_LOCAL);
                sym = dl ? dlsym(dl, "C_GetFunctionList") : NULL;
                if (!sym)
                        return CKR_GENERAL_ERROR;
                memcpy(&get, &sym, sizeof(get));
                rv = get(&real);
                if (rv != CKR_OK)
                        return rv;
                shim = *real;
                shim.C_Login = locked_login;
        }
        *ret = &shim;
        return CKR_OK;
}
