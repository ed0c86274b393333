/* fuzz_http_request.c - libFuzzer target: the strict HTTP/1.1 request parser (head scanner,
 * framing policy, chunked decoder, trailers). Input: 2 control bytes (limits, feed size and
 * body mode), then the bytes of the connection. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_http_run(data, size, 0);
    return 0;
}
