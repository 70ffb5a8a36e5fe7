/* Shared by the fuzz targets: the entry point and an invariant check that, unlike
 * assert(), holds in every build type. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                 \
        do {                                                                                     \
                if (!(x))                                                                        \
                        abort();                                                                 \
        } while (0)
