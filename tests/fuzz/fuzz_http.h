/* fuzz_http.h - shared driver of the HTTP/1.1 parser fuzz targets: feeds the input to one
 * parser in pieces whose sizes come from the input itself, handles every event as the
 * proxy does (body callback, DONE -> next), and stops at ERROR. Bounded: at most one pass
 * over the input, so a target cannot loop.
 * Threads: the fuzzer's thread. Test code only. */
#ifndef TORII_FUZZ_HTTP_H
#define TORII_FUZZ_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "torii/http.h"

/** Run one input through a request parser (response = 0) or a response parser (1). */
void fuzz_http_run(const uint8_t *data, size_t size, int response);

#endif
