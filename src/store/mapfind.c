/* The store's mapping lookup: which mapping of this process holds a pointer (store_int.h). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "store_int.h"

/* The mapping that holds p (the map: LMDB maps it whole, in one piece), from
 * /proc/self/maps; false when it cannot be told. */
bool torii_store__map_find(const void *p, struct store_span *out)
{
    char line[512];
    uintptr_t a = (uintptr_t)p;
    bool found = false;
    FILE *mf = fopen("/proc/self/maps", "re");

    while (mf != NULL && !found && fgets(line, sizeof(line), mf) != NULL) {
        char *end = NULL;
        uintptr_t lo = (uintptr_t)strtoull(line, &end, 16);
        uintptr_t hi = *end == '-' ? (uintptr_t)strtoull(end + 1, NULL, 16) : 0;

        if (a >= lo && a < hi) {
            out->lo = lo;
            out->hi = hi;
            found = true;
        }
    }
    if (mf != NULL) {
        (void)fclose(mf);
    }
    return found;
}
