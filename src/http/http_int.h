/* http_int.h - internal to the http module: helpers shared by the parser, the response
 * writer and the connection engine. Not to be included outside src/http. */
#ifndef TORII_HTTP_INT_H
#define TORII_HTTP_INT_H

#include <stddef.h>

#include <event2/buffer.h>

#include "torii/http.h"

/** 1 when s[0..len) is a non-empty RFC 9110 token (tchar only). */
int http_is_token(const char *s, size_t len);

/** Append an error response with the JSON body {"error": msg} (msg escaped). close adds
 * "Connection: close". Returns TORII_OK or TORII_ENOMEM. */
int http_write_error(struct evbuffer *out, int status, const char *msg, int version_minor,
                     int close) TORII_MUST_USE;

#endif
