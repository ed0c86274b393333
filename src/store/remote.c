/* remote.c - the write-through of certificate writes (fleet mode): set once at start, read
 * by certdb on every commit and by /readyz. Threads: set before other threads write; read
 * from any thread. */
#include "store_int.h"

void torii_store_set_remote(struct torii_store *st, const struct torii_store_remote *r)
{
    if (st != NULL) {
        st->remote = r != NULL ? *r : (struct torii_store_remote){0};
    }
}

const struct torii_store_remote *torii_store_remote_of(const struct torii_store *st)
{
    return st != NULL && st->remote.commit != NULL ? &st->remote : NULL;
}

int torii_store_writable(const struct torii_store *st)
{
    const struct torii_store_remote *r = torii_store_remote_of(st);

    return r == NULL || r->writable == NULL || r->writable(r->ctx);
}
