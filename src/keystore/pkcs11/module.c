/* The PKCS#11 module loader. Only this file knows the PKCS#11 API; it takes the types from
 * p11-kit's <p11-kit/pkcs11.h> (headers only: the module is dlopen()ed, nothing links
 * p11-kit). Every CK_RV is mapped here to a keyhold error, and its CKR_ name goes to the
 * caller's detail buffer, so an operator sees "C_Login: CKR_PIN_INCORRECT", not a number. */
#include "keystore/pkcs11/module.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <p11-kit/pkcs11.h>

#include "common/errors.h"
#include "keystore/pkcs11/module-internal.h"

#define TOKEN_LABEL_LEN 32 /* CK_TOKEN_INFO.label: blank-padded, not NUL-terminated */
#define SLOTS_MAX 4096     /* a bound on what a module may make us allocate */
#define MODULUS_MAX 2048   /* bytes: RSA-16384 */

/* PKCS#11 state that is per process, not per kh_p11: a module is initialised once, and a
 * token's login is shared by all sessions of the process. Several kh_p11 on one module
 * (the key store and the Key Connector importer in one process) count their uses here, so
 * the last one out calls C_Finalize (if one of them called C_Initialize) and C_Logout (if
 * one of them logged in), and no one pulls the module or the login from under another. A
 * module some other code of the process initialised is never finalised by us. */
#define SHARED_MAX 16
static struct shared {
        CK_FUNCTION_LIST *f;
        CK_SLOT_ID slot;
        bool is_login; /* a token's login (f, slot), else the module's initialisation (f) */
        bool ours;     /* we called C_Initialize / C_Login */
        unsigned refs;
} shared[SHARED_MAX];
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;

static struct shared *shared_find(CK_FUNCTION_LIST *f, bool is_login, CK_SLOT_ID slot) {
        for (size_t i = 0; i < SHARED_MAX; i++)
                if (shared[i].refs > 0 && shared[i].f == f && shared[i].is_login == is_login &&
                    (!is_login || shared[i].slot == slot))
                        return &shared[i];
        return NULL;
}

/* Takes a reference on (f, is_login, slot); ours says whether the caller's call made the
 * state (C_Initialize / C_Login returned CKR_OK). Call with shared_lock held. */
static int shared_ref(CK_FUNCTION_LIST *f, bool is_login, CK_SLOT_ID slot, bool ours) {
        struct shared *s = shared_find(f, is_login, slot);

        if (s) {
                s->refs++;
                return 0;
        }
        for (size_t i = 0; i < SHARED_MAX; i++)
                if (shared[i].refs == 0) {
                        shared[i] = (struct shared) { f, slot, is_login, ours, 1 };
                        return 0;
                }
        return -ENOMEM;
}

/* Drops a reference; true if it was the last one and the state is ours to undo. Call with
 * shared_lock held. */
static bool shared_unref(CK_FUNCTION_LIST *f, bool is_login, CK_SLOT_ID slot) {
        struct shared *s = shared_find(f, is_login, slot);

        if (!s || --s->refs > 0)
                return false;
        return s->ours;
}

#define CKR_NAME(rv) \
        { rv, #rv }
static const struct {
        CK_RV rv;
        const char *name;
} ckr_names[] = {
        CKR_NAME(CKR_OK),
        CKR_NAME(CKR_HOST_MEMORY),
        CKR_NAME(CKR_SLOT_ID_INVALID),
        CKR_NAME(CKR_GENERAL_ERROR),
        CKR_NAME(CKR_FUNCTION_FAILED),
        CKR_NAME(CKR_ARGUMENTS_BAD),
        CKR_NAME(CKR_CANT_LOCK),
        CKR_NAME(CKR_CRYPTOKI_ALREADY_INITIALIZED),
        CKR_NAME(CKR_CRYPTOKI_NOT_INITIALIZED),
        CKR_NAME(CKR_DEVICE_ERROR),
        CKR_NAME(CKR_DEVICE_MEMORY),
        CKR_NAME(CKR_DEVICE_REMOVED),
        CKR_NAME(CKR_ENCRYPTED_DATA_INVALID),
        CKR_NAME(CKR_ENCRYPTED_DATA_LEN_RANGE),
        CKR_NAME(CKR_FUNCTION_NOT_SUPPORTED),
        CKR_NAME(CKR_KEY_HANDLE_INVALID),
        CKR_NAME(CKR_KEY_SIZE_RANGE),
        CKR_NAME(CKR_KEY_TYPE_INCONSISTENT),
        CKR_NAME(CKR_KEY_FUNCTION_NOT_PERMITTED),
        CKR_NAME(CKR_MECHANISM_INVALID),
        CKR_NAME(CKR_MECHANISM_PARAM_INVALID),
        CKR_NAME(CKR_OPERATION_ACTIVE),
        CKR_NAME(CKR_PIN_INCORRECT),
        CKR_NAME(CKR_PIN_INVALID),
        CKR_NAME(CKR_PIN_LEN_RANGE),
        CKR_NAME(CKR_PIN_EXPIRED),
        CKR_NAME(CKR_PIN_LOCKED),
        CKR_NAME(CKR_SESSION_CLOSED),
        CKR_NAME(CKR_SESSION_COUNT),
        CKR_NAME(CKR_SESSION_HANDLE_INVALID),
        CKR_NAME(CKR_TOKEN_NOT_PRESENT),
        CKR_NAME(CKR_TOKEN_NOT_RECOGNIZED),
        CKR_NAME(CKR_USER_ALREADY_LOGGED_IN),
        CKR_NAME(CKR_USER_NOT_LOGGED_IN),
        CKR_NAME(CKR_USER_PIN_NOT_INITIALIZED),
        CKR_NAME(CKR_USER_TYPE_INVALID),
        CKR_NAME(CKR_BUFFER_TOO_SMALL),
};
#undef CKR_NAME

bool kh_p11_rv_is_lost(CK_RV rv) {
        switch (rv) {
        case CKR_DEVICE_REMOVED:
        case CKR_TOKEN_NOT_PRESENT:
        case CKR_DEVICE_ERROR: /* p11-kit's client module once its server is gone */
        case CKR_SESSION_HANDLE_INVALID:
        case CKR_SESSION_CLOSED:
        case CKR_CRYPTOKI_NOT_INITIALIZED:
        case CKR_USER_NOT_LOGGED_IN: /* a token that restarted forgot the login */
                return true;
        default:
                return false;
        }
}

int kh_p11_rv_error(CK_RV rv, int other) {
        if (kh_p11_rv_is_lost(rv))
                return -KH_E_KEYSTORE_UNAVAILABLE;
        return rv == CKR_HOST_MEMORY ? -ENOMEM : other;
}

void kh_p11_detail_set(char *detail, size_t detail_len, const char *call, const char *what) {
        if (detail && detail_len > 0)
                (void) snprintf(detail, detail_len, "%s: %s", call, what);
}

void kh_p11_detail_rv(char *detail, size_t detail_len, const char *call, CK_RV rv) {
        char hex[32];

        for (size_t i = 0; i < KH_ELEMENTSOF(ckr_names); i++)
                if (ckr_names[i].rv == rv) {
                        kh_p11_detail_set(detail, detail_len, call, ckr_names[i].name);
                        return;
                }
        (void) snprintf(hex, sizeof(hex), "CKR 0x%08lx", (unsigned long) rv);
        kh_p11_detail_set(detail, detail_len, call, hex);
}

struct kh_p11 *kh_p11_free(struct kh_p11 *p) {
        if (!p)
                return NULL;
        pthread_mutex_lock(&shared_lock);
        if (p->logged_in && shared_unref(p->f, true, p->slot))
                (void) p->f->C_Logout(p->session);
        if (p->has_session)
                (void) p->f->C_CloseSession(p->session);
        if (p->initialised && shared_unref(p->f, false, 0))
                (void) p->f->C_Finalize(NULL);
        pthread_mutex_unlock(&shared_lock);
        if (p->dl)
                (void) dlclose(p->dl);
        free(p);
        return NULL;
}

/* Loads the library and initialises it. */
static int module_load(struct kh_p11 *p, const char *module_path, char *detail, size_t detail_len) {
        CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
        CK_C_GetFunctionList get_list;
        const char *err;
        void *sym;
        CK_RV rv;
        int r;

        p->dl = dlopen(module_path, RTLD_NOW | RTLD_LOCAL);
        if (!p->dl) {
                err = dlerror();
                kh_p11_detail_set(detail, detail_len, "dlopen", err ? err : "failed");
                return -KH_E_PKCS11_MODULE;
        }
        sym = dlsym(p->dl, "C_GetFunctionList");
        if (!sym) {
                kh_p11_detail_set(detail, detail_len, "dlsym",
                           "no C_GetFunctionList: not a PKCS#11 module");
                return -KH_E_PKCS11_MODULE;
        }
        /* ISO C has no object-to-function pointer conversion; POSIX guarantees this copy. */
        memcpy(&get_list, &sym, sizeof(get_list));
        rv = get_list(&p->f);
        if (rv != CKR_OK || !p->f) {
                kh_p11_detail_rv(detail, detail_len, "C_GetFunctionList", rv);
                return -KH_E_PKCS11_MODULE;
        }

        pthread_mutex_lock(&shared_lock);
        rv = p->f->C_Initialize(&args);
        if (rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
                r = shared_ref(p->f, false, 0, rv == CKR_OK);
                if (r < 0 && rv == CKR_OK)
                        (void) p->f->C_Finalize(NULL);
                p->initialised = r == 0;
        } else {
                kh_p11_detail_rv(detail, detail_len, "C_Initialize", rv);
                r = rv == CKR_HOST_MEMORY ? -ENOMEM : -KH_E_PKCS11_MODULE;
        }
        pthread_mutex_unlock(&shared_lock);
        return r;
}

/* Label of a token, blank padding removed, compared with label. */
static bool token_label_is(const CK_TOKEN_INFO *info, const char *label, size_t label_len) {
        size_t n = TOKEN_LABEL_LEN;

        while (n > 0 && info->label[n - 1] == ' ')
                n--;
        return n == label_len && memcmp(info->label, label, n) == 0;
}

/* The slots with a token present into a new array (*ret NULL if none). */
static int slots_list(struct kh_p11 *p, CK_SLOT_ID **ret, CK_ULONG *ret_n, char *detail,
                      size_t detail_len) {
        KH_CLEANUP_FREE CK_SLOT_ID *slots = NULL;
        CK_ULONG n = 0;
        CK_RV rv;

        rv = p->f->C_GetSlotList(CK_TRUE, NULL, &n);
        if (rv != CKR_OK) {
                kh_p11_detail_rv(detail, detail_len, "C_GetSlotList", rv);
                return kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
        }
        if (n > SLOTS_MAX) {
                kh_p11_detail_set(detail, detail_len, "C_GetSlotList", "too many slots");
                return -KH_E_PKCS11_MODULE;
        }
        if (n > 0) {
                slots = calloc(n, sizeof(*slots));
                if (!slots)
                        return -ENOMEM;
                rv = p->f->C_GetSlotList(CK_TRUE, slots, &n);
                if (rv != CKR_OK) {
                        kh_p11_detail_rv(detail, detail_len, "C_GetSlotList", rv);
                        return kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
                }
        }
        *ret = KH_TAKE_PTR(slots);
        *ret_n = n;
        return 0;
}

/* A slot given by number: it must be listed with a token present. Looked up in the slot
 * list rather than asked directly: modules differ in how they take an unknown slot id
 * (SoftHSM2 throws a C++ exception inside and catches it, which trips ASan). */
static int slot_check(struct kh_p11 *p, unsigned long slot, char *detail, size_t detail_len) {
        KH_CLEANUP_FREE CK_SLOT_ID *slots = NULL;
        CK_ULONG n = 0;
        int r;

        r = slots_list(p, &slots, &n, detail, detail_len);
        if (r < 0)
                return r;
        for (CK_ULONG i = 0; i < n; i++)
                if (slots[i] == slot) {
                        p->slot = slot;
                        return 0;
                }
        kh_p11_detail_set(detail, detail_len, "C_GetSlotList", "no token in a slot with this number");
        return -KH_E_PKCS11_TOKEN;
}

static int token_find(struct kh_p11 *p, const char *label, char *detail, size_t detail_len) {
        KH_CLEANUP_FREE CK_SLOT_ID *slots = NULL;
        CK_ULONG n = 0;
        size_t label_len = strlen(label);
        int r;

        r = slots_list(p, &slots, &n, detail, detail_len);
        if (r < 0)
                return r;
        for (CK_ULONG i = 0; i < n; i++) {
                CK_TOKEN_INFO info;

                if (p->f->C_GetTokenInfo(slots[i], &info) != CKR_OK)
                        continue; /* removed meanwhile, or not ready: not ours */
                if (token_label_is(&info, label, label_len)) {
                        p->slot = slots[i];
                        return 0;
                }
        }
        kh_p11_detail_set(detail, detail_len, "C_GetTokenInfo", "no token with this label");
        return -KH_E_PKCS11_TOKEN;
}

static int mechanism_check(struct kh_p11 *p, char *detail, size_t detail_len) {
        CK_MECHANISM_INFO info;
        CK_RV rv;

        rv = p->f->C_GetMechanismInfo(p->slot, CKM_RSA_PKCS_OAEP, &info);
        if (rv == CKR_MECHANISM_INVALID || (rv == CKR_OK && !(info.flags & CKF_DECRYPT))) {
                kh_p11_detail_set(detail, detail_len, "C_GetMechanismInfo",
                           "CKM_RSA_PKCS_OAEP cannot decrypt on this token");
                return -KH_E_PKCS11_MECHANISM;
        }
        if (rv != CKR_OK) {
                kh_p11_detail_rv(detail, detail_len, "C_GetMechanismInfo", rv);
                return kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
        }
        return 0;
}

static int login(struct kh_p11 *p, const struct kh_secret *pin, bool read_write, char *detail,
                 size_t detail_len) {
        CK_FLAGS flags = CKF_SERIAL_SESSION | (read_write ? CKF_RW_SESSION : 0);
        CK_RV rv;
        int r = 0;

        rv = p->f->C_OpenSession(p->slot, flags, NULL, NULL, &p->session);
        if (rv != CKR_OK) {
                kh_p11_detail_rv(detail, detail_len, "C_OpenSession", rv);
                return kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
        }
        p->has_session = true;
        p->read_write = read_write;

        /* PKCS#11 takes a non-const pointer; modules do not write the PIN. */
        pthread_mutex_lock(&shared_lock);
        rv = p->f->C_Login(p->session, CKU_USER, (CK_UTF8CHAR *) (uintptr_t) kh_secret_bytes(pin),
                           kh_secret_len(pin));
        switch (rv) {
        case CKR_OK:
        case CKR_USER_ALREADY_LOGGED_IN: /* another session of this process did: shared */
                r = shared_ref(p->f, true, p->slot, rv == CKR_OK);
                if (r < 0 && rv == CKR_OK)
                        (void) p->f->C_Logout(p->session);
                p->logged_in = r == 0;
                break;
        case CKR_PIN_INCORRECT:
        case CKR_PIN_LEN_RANGE:
        case CKR_PIN_INVALID:
        case CKR_PIN_EXPIRED:
                kh_p11_detail_rv(detail, detail_len, "C_Login", rv);
                r = -KH_E_PKCS11_PIN;
                break;
        case CKR_PIN_LOCKED: /* no PIN opens it until the SO unlocks it: said apart */
                kh_p11_detail_rv(detail, detail_len, "C_Login", rv);
                r = -KH_E_PKCS11_PIN_LOCKED;
                break;
        default:
                kh_p11_detail_rv(detail, detail_len, "C_Login", rv);
                r = kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
                break;
        }
        pthread_mutex_unlock(&shared_lock);
        return r;
}

/* On an initialised module: the token of a, its mechanism, a session logged in. */
static int token_login(struct kh_p11 *p, const struct kh_p11_open_args *a, char *detail,
                       size_t detail_len) {
        int r;

        if (a->token_label)
                r = token_find(p, a->token_label, detail, detail_len);
        else
                r = slot_check(p, a->slot, detail, detail_len);
        if (r >= 0)
                r = mechanism_check(p, detail, detail_len);
        if (r >= 0)
                r = login(p, a->pin, a->read_write, detail, detail_len);
        return r;
}

int kh_p11_open_ex(const struct kh_p11_open_args *a, struct kh_p11 **ret, char *detail,
                   size_t detail_len) {
        KH_CLEANUP(kh_p11_freep) struct kh_p11 *p = NULL;
        int r;

        if (detail && detail_len > 0)
                detail[0] = '\0';
        if (!a || !a->module_path || !a->pin || !ret || (!a->token_label && !a->has_slot) ||
            (a->token_label && strlen(a->token_label) > TOKEN_LABEL_LEN))
                return -EINVAL;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        r = module_load(p, a->module_path, detail, detail_len);
        if (r < 0)
                return r;
        r = token_login(p, a, detail, detail_len);
        if (r < 0)
                return r;

        *ret = KH_TAKE_PTR(p);
        return 0;
}

/* Drops p's session and login, and (when p is the module's only user in the process) its
 * initialisation, then initialises the module again. Under shared_lock. */
static int reinitialise_locked(struct kh_p11 *p, char *detail, size_t detail_len) {
        CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
        struct shared *s;
        CK_RV rv;
        int r;

        if (p->logged_in && shared_unref(p->f, true, p->slot))
                (void) p->f->C_Logout(p->session);
        p->logged_in = false;
        if (p->has_session)
                (void) p->f->C_CloseSession(p->session);
        p->has_session = false;
        s = p->initialised ? shared_find(p->f, false, 0) : NULL;
        if (s && s->refs > 1)
                return 0; /* another user of the module keeps it: sessions only */
        if (p->initialised && shared_unref(p->f, false, 0))
                (void) p->f->C_Finalize(NULL);
        p->initialised = false;
        rv = p->f->C_Initialize(&args);
        if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
                kh_p11_detail_rv(detail, detail_len, "C_Initialize", rv);
                return kh_p11_rv_error(rv, -KH_E_KEYSTORE_UNAVAILABLE);
        }
        r = shared_ref(p->f, false, 0, rv == CKR_OK);
        if (r < 0) {
                if (rv == CKR_OK)
                        (void) p->f->C_Finalize(NULL);
                return r;
        }
        p->initialised = true;
        return 0;
}

int kh_p11_reconnect(struct kh_p11 *p, const struct kh_p11_open_args *a, char *detail,
                     size_t detail_len) {
        int r;

        if (detail && detail_len > 0)
                detail[0] = '\0';
        if (!p || !a || !a->pin || (!a->token_label && !a->has_slot))
                return -EINVAL;
        pthread_mutex_lock(&shared_lock);
        r = reinitialise_locked(p, detail, detail_len);
        pthread_mutex_unlock(&shared_lock);
        if (r < 0)
                return r;
        r = token_login(p, a, detail, detail_len);
        /* no token (yet), or a module that cannot talk to it: not back */
        if (r == -KH_E_PKCS11_TOKEN || r == -KH_E_PKCS11_MODULE)
                r = -KH_E_KEYSTORE_UNAVAILABLE;
        return r;
}

int kh_p11_session_open(struct kh_p11 *p, struct kh_p11 **ret) {
        CK_FLAGS flags = CKF_SERIAL_SESSION | (p->read_write ? CKF_RW_SESSION : 0);
        KH_CLEANUP(kh_p11_freep) struct kh_p11 *s = NULL;
        CK_RV rv;
        int r;

        if (!p->has_session || !p->logged_in)
                return -KH_E_KEYSTORE_UNAVAILABLE; /* a reconnect that did not get through */
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        /* no dl, no reference on the initialisation or the login: freeing s closes its
         * session and nothing else */
        s->f = p->f;
        s->slot = p->slot;
        s->read_write = p->read_write;
        rv = p->f->C_OpenSession(p->slot, flags, NULL, NULL, &s->session);
        if (rv != CKR_OK)
                return kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
        s->has_session = true;
        /* a session opened after the login went (every session of the token was closed
         * behind our back) is public: it would find no private key, and say -ENOENT */
        r = kh_p11_probe(s, NULL, 0);
        if (r < 0)
                return r;
        *ret = KH_TAKE_PTR(s);
        return 0;
}

int kh_p11_probe(struct kh_p11 *p, char *detail, size_t detail_len) {
        CK_SESSION_INFO info;
        CK_RV rv;

        if (!p->has_session) {
                kh_p11_detail_set(detail, detail_len, "C_OpenSession", "no session");
                return -KH_E_KEYSTORE_UNAVAILABLE;
        }
        rv = p->f->C_GetSessionInfo(p->session, &info);
        if (rv != CKR_OK) {
                kh_p11_detail_rv(detail, detail_len, "C_GetSessionInfo", rv);
                return kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
        }
        if (info.state != CKS_RO_USER_FUNCTIONS && info.state != CKS_RW_USER_FUNCTIONS) {
                kh_p11_detail_set(detail, detail_len, "C_GetSessionInfo", "logged out");
                return -KH_E_KEYSTORE_UNAVAILABLE;
        }
        return 0;
}

int kh_p11_open(const char *module_path, const char *token_label, const struct kh_secret *pin,
                struct kh_p11 **ret, char *detail, size_t detail_len) {
        const struct kh_p11_open_args a = {
                .module_path = module_path,
                .token_label = token_label,
                .pin = pin,
        };

        if (detail && detail_len > 0)
                detail[0] = '\0';
        if (!token_label)
                return -EINVAL;
        return kh_p11_open_ex(&a, ret, detail, detail_len);
}

/* The first RSA private key labelled label into *ret. */
static int key_handle(struct kh_p11 *p, const char *label, CK_OBJECT_HANDLE *ret) {
        CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
        CK_KEY_TYPE type = CKK_RSA;
        CK_ATTRIBUTE tmpl[] = {
                {CKA_CLASS, &cls, sizeof(cls)},
                {CKA_KEY_TYPE, &type, sizeof(type)},
                {CKA_LABEL, (void *) (uintptr_t) label, strlen(label)},
        };
        CK_OBJECT_HANDLE h;
        CK_ULONG n = 0;
        CK_RV rv;

        rv = p->f->C_FindObjectsInit(p->session, tmpl, KH_ELEMENTSOF(tmpl));
        if (rv != CKR_OK)
                return kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
        rv = p->f->C_FindObjects(p->session, &h, 1, &n);
        (void) p->f->C_FindObjectsFinal(p->session);
        if (rv != CKR_OK)
                return kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
        if (n == 0)
                return -KH_E_PKCS11_KEY;
        *ret = h;
        return 0;
}

/* The key's modulus length in bytes into *ret. */
static int modulus_len(struct kh_p11 *p, CK_OBJECT_HANDLE key, size_t *ret) {
        uint8_t n[MODULUS_MAX];
        CK_ATTRIBUTE a = {CKA_MODULUS, n, sizeof(n)};
        size_t i = 0;
        CK_RV rv;

        rv = p->f->C_GetAttributeValue(p->session, key, &a, 1);
        if (kh_p11_rv_is_lost(rv))
                return -KH_E_KEYSTORE_UNAVAILABLE;
        if (rv != CKR_OK || a.ulValueLen == 0 || a.ulValueLen > sizeof(n))
                return -KH_E_PKCS11_KEY; /* sensitive or absent, or over 16384 bits */
        while (i < a.ulValueLen && n[i] == 0)
                i++;
        *ret = a.ulValueLen - i;
        return 0;
}

int kh_p11_key_find(struct kh_p11 *p, const char *key_label) {
        CK_OBJECT_HANDLE h;

        if (!p || !key_label)
                return -EINVAL;
        return key_handle(p, key_label, &h);
}

int kh_p11_rsa_oaep_decrypt(struct kh_p11 *p, const char *key_label, enum kh_oaep_md md,
                            const uint8_t *in, size_t len, struct kh_secret **ret) {
        CK_OBJECT_HANDLE key;
        int r;

        if (!p || !key_label || !in || len == 0 || !ret ||
            (md != KH_OAEP_SHA1 && md != KH_OAEP_SHA256))
                return -EINVAL;
        r = key_handle(p, key_label, &key);
        if (r < 0)
                return r;
        return kh_p11_oaep_decrypt(p, key, md, in, len, ret);
}

int kh_p11_oaep_decrypt(struct kh_p11 *p, CK_OBJECT_HANDLE key, enum kh_oaep_md md,
                        const uint8_t *in, size_t len, struct kh_secret **ret) {
        CK_RSA_PKCS_OAEP_PARAMS params = {
                .hashAlg = md == KH_OAEP_SHA1 ? CKM_SHA_1 : CKM_SHA256,
                .mgf = md == KH_OAEP_SHA1 ? CKG_MGF1_SHA1 : CKG_MGF1_SHA256,
                .source = CKZ_DATA_SPECIFIED,
                .pSourceData = NULL,
                .ulSourceDataLen = 0,
        };
        CK_MECHANISM mech = {CKM_RSA_PKCS_OAEP, &params, sizeof(params)};
        CK_ULONG out_len;
        size_t mod_len;
        uint8_t *out;
        CK_RV rv;
        int r;

        if (md != KH_OAEP_SHA1 && md != KH_OAEP_SHA256)
                return -EINVAL;
        /* A ciphertext is exactly one modulus long. Checked here because modules differ in
         * what they do with another length: SoftHSM2 2.6 answers
         * CKR_ENCRYPTED_DATA_LEN_RANGE and keeps the operation open, so every later call on
         * the session fails with CKR_OPERATION_ACTIVE. */
        r = modulus_len(p, key, &mod_len);
        if (r < 0)
                return r;
        if (len != mod_len)
                return -KH_E_PKCS11_DECRYPT;
        /* A plaintext is never longer than its ciphertext, so one call does: no size query
         * that would leave an operation open. Allocated before the operation starts, which
         * then always ends in C_Decrypt. The buffer may hold the padded block: wiped. */
        out = malloc(len);
        if (!out)
                return -ENOMEM;

        rv = p->f->C_DecryptInit(p->session, &mech, key);
        switch (rv) {
        case CKR_OK:
                out_len = len;
                rv = p->f->C_Decrypt(p->session, (CK_BYTE *) (uintptr_t) in, len, out, &out_len);
                if (rv == CKR_HOST_MEMORY || kh_p11_rv_is_lost(rv))
                        r = kh_p11_rv_error(rv, 0);
                else if (rv != CKR_OK || out_len == 0 || out_len > len)
                        r = -KH_E_PKCS11_DECRYPT;
                else
                        r = kh_secret_new_from(out, out_len, ret);
                break;
        case CKR_MECHANISM_INVALID:
        case CKR_MECHANISM_PARAM_INVALID:
        case CKR_ARGUMENTS_BAD: /* SoftHSM2's answer to OAEP with another hash than SHA-1 */
                r = -KH_E_PKCS11_MECHANISM;
                break;
        case CKR_KEY_FUNCTION_NOT_PERMITTED:
        case CKR_KEY_TYPE_INCONSISTENT:
        case CKR_KEY_HANDLE_INVALID:
                r = -KH_E_PKCS11_KEY;
                break;
        default:
                r = kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
                break;
        }
        OPENSSL_cleanse(out, len);
        free(out);
        return r;
}
