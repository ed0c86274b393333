/* routes_ui.c - the operator's web page at /ui/ (ui/ in the source tree, compiled in by
 * cmake/ToriiEmbed.cmake): GET/HEAD only, no authentication (the page holds no data; every
 * API call it makes carries the operator's token), a strict Content-Security-Policy (no
 * inline script or style, nothing from another origin), never framed, never cached stale.
 * /ui redirects to /ui/, which is index.html. Threads: the admin thread. */
#include <string.h>

#include "admin_int.h"
#include "torii/mem.h"
#include "ui_assets.h"

#define UI_CSP                                                                                     \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"

static const struct admin_ui_asset *ui_find_index(void)
{
    for (size_t i = 0; i < admin_ui_n_assets; i++) {
        if (strcmp(admin_ui_assets[i].path, "/ui/index.html") == 0) {
            return &admin_ui_assets[i];
        }
    }
    return NULL;
}

static const struct admin_ui_asset *ui_find(const struct torii_http_req *req)
{
    for (size_t i = 0; i < admin_ui_n_assets; i++) {
        if (admin_req_path_is(req, admin_ui_assets[i].path)) {
            return &admin_ui_assets[i];
        }
    }
    return admin_req_path_is(req, "/ui/") ? ui_find_index() : NULL;
}

static void ui_headers(struct torii_admin_reply *reply)
{
    admin_reply_header(reply, "Content-Security-Policy", UI_CSP);
    admin_reply_header(reply, "X-Content-Type-Options", "nosniff");
    admin_reply_header(reply, "X-Frame-Options", "DENY");
    admin_reply_header(reply, "Referrer-Policy", "no-referrer");
    admin_reply_header(reply, "Cache-Control", "no-cache");
}

int admin_ui_route(const struct torii_http_req *req, struct torii_admin_reply *reply)
{
    const struct admin_ui_asset *a = NULL;

    if (admin_req_path_is(req, "/ui")) {
        reply->status = 301;
        admin_reply_header(reply, "Location", "/ui/");
        return TORII_OK;
    }
    if (req->path.len < 4 || memcmp(req->path.ptr, "/ui/", 4) != 0) {
        return TORII_ENOTFOUND;
    }
    if (!admin_req_is_get(req)) {
        admin_reply_method_not_allowed(reply, "GET, HEAD");
        return TORII_OK;
    }
    if (!admin_req_query_none(req, reply)) {
        return TORII_OK;
    }
    a = ui_find(req);
    if (a == NULL) {
        admin_reply_error(reply, 404, "no such file of the web page");
        return TORII_OK;
    }
    reply->status = 200;
    reply->content_type = a->content_type;
    reply->raw = torii_xmalloc(a->len + 1);
    memcpy(reply->raw, a->data, a->len + 1);
    reply->raw_len = a->len;
    ui_headers(reply);
    return TORII_OK;
}
