/* ui_assets.h - internal to the admin module: the files of the web page (ui/), compiled into
 * the binary by cmake/ToriiEmbed.cmake (the generated ui_assets.c in the build tree).
 * Ownership: static, read-only. Threads: any. */
#ifndef TORII_ADMIN_UI_ASSETS_H
#define TORII_ADMIN_UI_ASSETS_H

#include <stddef.h>

struct admin_ui_asset {
    const char *path;         /* "/ui/app.js" */
    const char *content_type; /* from the file's extension */
    const unsigned char *data;
    size_t len; /* data holds len bytes and a trailing NUL */
};

extern const struct admin_ui_asset admin_ui_assets[];
extern const size_t admin_ui_n_assets;

#endif
