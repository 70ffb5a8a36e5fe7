/* Scope-bound cleanup and ownership helpers (systemd style, pedantic-clean). */
#pragma once

#include <stdlib.h>
#include <unistd.h>

#define KH_MUST_CHECK __attribute__((warn_unused_result))
#define KH_CLEANUP(fn) __attribute__((cleanup(fn)))

/* Defines fn##p(type *p), calling fn(*p) when *p is set; fn must accept its object. */
#define KH_DEFINE_CLEANUP(fn, type)                                                              \
        static inline void fn##p(type *p) {                                                      \
                if (*p)                                                                          \
                        (void) fn(*p);                                                           \
        }

static inline void kh_freep(void *p) {
        free(*(void **) p);
}
#define KH_CLEANUP_FREE KH_CLEANUP(kh_freep)

static inline void kh_closep(int *fd) {
        if (*fd >= 0)
                (void) close(*fd);
}

static inline void *kh_take_ptr_(void *pp) {
        void **p = pp, *v = *p;
        *p = NULL;
        return v;
}
/* Hands ownership on: yields the pointer and leaves NULL behind for the cleanup. */
#define KH_TAKE_PTR(p) ((__typeof__(p)) kh_take_ptr_(&(p)))

static inline int kh_take_fd(int *fd) {
        int v = *fd;
        *fd = -1;
        return v;
}

#define KH_ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

#define kh_container_of(ptr, type, member) ((type *) ((char *) (ptr) - offsetof(type, member)))
