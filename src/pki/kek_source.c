/* kek_source.c - where KEKs come from (docs/operations.md, Keys at rest): a file of 32 raw
 * bytes or 64 hex digits readable by its owner only (keys.kek_file), or a systemd credential
 * $CREDENTIALS_DIRECTORY/<name> (keys.kek_credential, LoadCredentialEncrypted=), plus the
 * previous KEKs kept to open what is not re-wrapped yet. Read once, at start, on the main
 * thread; every buffer that held key bytes is wiped. */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "torii/codec.h"
#include "torii/pki.h"

#define KEK_FILE_MAX 256 /* bytes read: 64 hex digits and some whitespace */

/* 32 raw bytes, or 64 hex digits with optional surrounding whitespace. */
static int kek_decode(const unsigned char *buf, size_t len, unsigned char key[TORII_KEK_LEN])
{
    size_t b = 0;

    if (len == TORII_KEK_LEN) {
        memcpy(key, buf, TORII_KEK_LEN);
        return TORII_OK;
    }
    while (b < len && strchr(" \t\r\n", buf[b]) != NULL) {
        b++;
    }
    while (len > b && strchr(" \t\r\n", buf[len - 1]) != NULL) {
        len--;
    }
    if (len - b != (size_t)2 * TORII_KEK_LEN) {
        return TORII_EINVAL;
    }
    return torii_hex_decode((const char *)buf + b, len - b, key, TORII_KEK_LEN);
}

int torii_kek_read_file(const char *path, unsigned char key[TORII_KEK_LEN], struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    unsigned char buf[KEK_FILE_MAX + 1];
    struct stat sb;
    ssize_t n = 0;
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    TORII_ENSURE(fd >= 0, torii_errf(eb, TORII_EIO, "kek: cannot open '%s': %s", path,
                                     torii_errno_text(errno).s));
    TORII_ENSURE(fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode),
                 torii_errf(eb, TORII_EINVAL, "kek: '%s' is not a regular file", path));
    TORII_ENSURE((sb.st_mode & 077) == 0,
                 torii_errf(eb, TORII_EPERM,
                            "kek: '%s' is readable or writable by group or others (mode %03o): "
                            "chmod 600 it",
                            path, (unsigned)(sb.st_mode & 0777)));
    do {
        n = read(fd, buf + len, sizeof(buf) - len);
        len += n > 0 ? (size_t)n : 0;
    } while ((n > 0 || (n < 0 && errno == EINTR)) && len < sizeof(buf));
    TORII_ENSURE(n >= 0, torii_errf(eb, TORII_EIO, "kek: cannot read '%s': %s", path,
                                    torii_errno_text(errno).s));
    TORII_ENSURE(len <= KEK_FILE_MAX && kek_decode(buf, len, key) == TORII_OK,
                 torii_errf(eb, TORII_EINVAL,
                            "kek: '%s' must hold exactly 32 raw bytes or 64 hex digits", path));
out:
    OPENSSL_cleanse(buf, sizeof(buf));
    if (fd >= 0) {
        (void)close(fd);
    }
    return rc;
}

int torii_kek_credential_path(const char *dir, const char *name, char *out, size_t cap,
                              struct torii_errbuf *eb)
{
    int n;

    if (name == NULL || name[0] == '\0' || strchr(name, '/') != NULL || strcmp(name, ".") == 0
        || strcmp(name, "..") == 0) {
        return torii_errf(eb, TORII_EINVAL,
                          "kek: credential name '%s' must be a plain file name (no '/')",
                          name != NULL ? name : "");
    }
    if (dir == NULL || dir[0] == '\0') {
        return torii_errf(eb, TORII_EINVAL,
                          "kek: credential '%s' is configured but $CREDENTIALS_DIRECTORY is not "
                          "set (run under systemd with LoadCredentialEncrypted=%s:...)",
                          name, name);
    }
    n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) {
        return torii_errf(eb, TORII_ETOOBIG, "kek: credential path for '%s' is too long", name);
    }
    return TORII_OK;
}

/* One KEK from a file (cred 0) or a credential name (cred 1) into r. */
static int kek_load_one(struct torii_kek_ring *r, const char *what, int cred, const char *dir,
                        int current, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    unsigned char key[TORII_KEK_LEN];
    char path[4096];

    if (cred) {
        TORII_TRY(torii_kek_credential_path(dir, what, path, sizeof(path), eb));
        what = path;
    }
    TORII_TRY(torii_kek_read_file(what, key, eb));
    TORII_TRY(torii_kek_ring_add(r, key, current, eb));
out:
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

/* Each string of arr (NULL: none) as a previous KEK. */
static int kek_load_list(struct torii_kek_ring *r, const json_t *arr, int cred, const char *dir,
                         const char *key_name, struct torii_errbuf *eb)
{
    size_t i;
    const json_t *v;

    if (arr == NULL) {
        return TORII_OK;
    }
    if (!json_is_array(arr)) {
        return torii_errf(eb, TORII_EINVAL, "config: keys.%s must be an array of strings",
                          key_name);
    }
    json_array_foreach (arr, i, v) {
        int rc;

        if (!json_is_string(v) || json_string_length(v) == 0) {
            return torii_errf(eb, TORII_EINVAL, "config: keys.%s[%zu] must be a non-empty string",
                              key_name, i);
        }
        rc = kek_load_one(r, json_string_value(v), cred, dir, 0, eb);
        if (rc != TORII_OK) {
            return rc;
        }
    }
    return TORII_OK;
}

int torii_kek_ring_load(const struct torii_kek_sources *s, struct torii_kek_ring **out,
                        struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_kek_ring *r = NULL;
    int has_file = s->file != NULL && s->file[0] != '\0';
    int has_cred = s->credential != NULL && s->credential[0] != '\0';

    *out = NULL;
    TORII_ENSURE(!(has_file && has_cred),
                 torii_errf(eb, TORII_EINVAL,
                            "config: keys.kek_file and keys.kek_credential both name the current "
                            "KEK: set one"));
    TORII_ENSURE(has_file || has_cred
                     || (json_array_size(s->previous_files) == 0
                         && json_array_size(s->previous_credentials) == 0),
                 torii_errf(eb, TORII_EINVAL,
                            "config: previous KEKs are set but no current one (keys.kek_file or "
                            "keys.kek_credential)"));
    if (!has_file && !has_cred) {
        goto out;
    }
    r = torii_kek_ring_new();
    TORII_TRY(
        kek_load_one(r, has_file ? s->file : s->credential, has_cred, s->credentials_dir, 1, eb));
    TORII_TRY(kek_load_list(r, s->previous_files, 0, NULL, "previous_kek_files", eb));
    TORII_TRY(kek_load_list(r, s->previous_credentials, 1, s->credentials_dir,
                            "previous_kek_credentials", eb));
    *out = r;
    r = NULL;
out:
    torii_kek_ring_free(r);
    return rc;
}
