/* fuzz_http_response.c - libFuzzer target: the backend response parser (status line,
 * framing, chunked decoder, trailers, interim responses). Input: 2 control bytes (limits,
 * feed size, body mode, HEAD), then the bytes the backend sends. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_http_run(data, size, 1);
    return 0;
}
