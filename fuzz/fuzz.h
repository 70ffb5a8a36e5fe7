/* Shared by the fuzz targets: the entry point and an invariant check that, unlike
 * assert(), holds in every build type. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                 \
        do {                                                                                     \
                if (!(x))                                                                        \
                        abort();                                                                 \
        } while (0)

/* A lower-case 8-4-4-4-12 GUID: written here, not taken from common/parse.c, so that the
 * oracle does not share code with what it checks. */
static inline bool is_canonical_guid(const char *s) {
        if (strlen(s) != 36)
                return false;
        for (size_t i = 0; i < 36; i++) {
                bool dash = i == 8 || i == 13 || i == 18 || i == 23;
                bool hex = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f');

                if (dash ? s[i] != '-' : !hex)
                        return false;
        }
        return true;
}
