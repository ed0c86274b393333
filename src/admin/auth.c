/* auth.c - the admin token and the per-request credential check. The token never reaches a
 * log line or an error message; decoded Basic credentials are wiped after use. */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "admin_auth.h"
#include "torii/codec.h"
#include "torii/log.h"
#include "torii/mem.h"

#define ADMIN_TOKEN_FILE    "admin.token"
#define ADMIN_TOKEN_RAW     32
#define ADMIN_TOKEN_MIN_LEN 16
#define ADMIN_TOKEN_MAX_LEN 512
#define ADMIN_BASIC_MAX_B64 1024

static int errno_msg(struct torii_errbuf *eb, const char *what, const char *path, int err)
{
    return torii_errf(eb, TORII_EIO, "admin: %s %s: %s", what, path, torii_errno_text(err).s);
}

/* The whole file into buf (at most cap - 1 bytes, else too long); *len its length. */
static int token_read_all(int fd, const char *path, char *buf, size_t cap, size_t *len,
                          struct torii_errbuf *eb)
{
    for (;;) {
        ssize_t n = read(fd, buf + *len, cap - 1 - *len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return errno_msg(eb, "cannot read", path, errno);
        }
        if (n == 0) {
            return TORII_OK;
        }
        *len += (size_t)n;
        if (*len >= cap - 1) {
            return torii_errf(eb, TORII_EINVAL, "admin: token in %s is too long", path);
        }
    }
}

/* The token in buf[0..len) without the whitespace around it, checked: *out (malloc'd). */
static int token_trim_check(const char *buf, size_t len, const char *path, char **out,
                            struct torii_errbuf *eb)
{
    size_t start = 0;

    while (len > 0
           && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '
               || buf[len - 1] == '\t')) {
        len--;
    }
    while (start < len && (buf[start] == ' ' || buf[start] == '\t')) {
        start++;
    }
    if (len - start < ADMIN_TOKEN_MIN_LEN) {
        return torii_errf(eb, TORII_EINVAL, "admin: token in %s is shorter than %d characters",
                          path, ADMIN_TOKEN_MIN_LEN);
    }
    for (size_t i = start; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c <= 0x20 || c >= 0x7f) {
            return torii_errf(eb, TORII_EINVAL,
                              "admin: token in %s holds a non-printable character", path);
        }
    }
    *out = torii_xstrndup(buf + start, len - start);
    return TORII_OK;
}

/* Read a token file: whitespace around the token is ignored. */
static int token_read_fd(int fd, const char *path, char **out, struct torii_errbuf *eb)
{
    char buf[ADMIN_TOKEN_MAX_LEN + 2];
    size_t len = 0;
    struct stat st;
    int rc = TORII_OK;

    if (fstat(fd, &st) != 0) {
        rc = errno_msg(eb, "cannot stat", path, errno);
        goto out;
    }
    TORII_ENSURE(S_ISREG(st.st_mode),
                 torii_errf(eb, TORII_EIO, "admin: %s is not a regular file", path));
    if ((st.st_mode & 077) != 0) {
        torii_log(TORII_LOG_WARN, "admin: token file is readable by others (file=%s mode=%03o)",
                  path, (unsigned)(st.st_mode & 0777));
    }
    TORII_TRY(token_read_all(fd, path, buf, sizeof(buf), &len, eb));
    TORII_TRY(token_trim_check(buf, len, path, out, eb));
out:
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
}

static int token_generate(const char *path, char **out, struct torii_errbuf *eb)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[ADMIN_TOKEN_RAW];
    char tok[ADMIN_TOKEN_RAW * 2 + 2];
    size_t len = ADMIN_TOKEN_RAW * 2 + 1;
    size_t off = 0;
    int fd = -1;
    int rc = TORII_OK;

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = errno == EEXIST ? TORII_EEXIST : errno_msg(eb, "cannot create", path, errno);
        goto out;
    }
    TORII_ENSURE(torii_rand_bytes(raw, sizeof(raw)) == TORII_OK,
                 torii_errf(eb, TORII_EIO, "admin: no randomness for the admin token"));
    for (size_t i = 0; i < sizeof(raw); i++) {
        tok[2 * i] = hex[raw[i] >> 4];
        tok[2 * i + 1] = hex[raw[i] & 15];
    }
    tok[len - 1] = '\n';
    tok[len] = '\0';
    while (off < len) {
        ssize_t n = write(fd, tok + off, len - off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rc = errno_msg(eb, "cannot write", path, errno);
            goto out;
        }
        off += (size_t)n;
    }
    if (fsync(fd) != 0) {
        rc = errno_msg(eb, "cannot sync", path, errno);
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = errno_msg(eb, "cannot close", path, errno);
        goto out;
    }
    fd = -1;
    *out = torii_xstrndup(tok, len - 1);
    torii_log(TORII_LOG_NOTICE, "admin: generated a new admin token (file=%s)", path);
out:
    if (fd >= 0) {
        (void)close(fd);
        (void)unlink(path); /* never leave a half-written token behind */
    }
    OPENSSL_cleanse(raw, sizeof(raw));
    OPENSSL_cleanse(tok, sizeof(tok));
    return rc;
}

/* One round of loading the token file at path: read it when it exists, else create the
 * directory and generate it. TORII_EEXIST: another process created it meanwhile. */
static int token_load_round(const struct torii_config *cfg, const char *path, char **tok,
                            struct torii_errbuf *eb)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    int rc = TORII_OK;

    if (fd >= 0) {
        rc = token_read_fd(fd, path, tok, eb);
        (void)close(fd);
        return rc;
    }
    if (errno != ENOENT) {
        return errno_msg(eb, "cannot open", path, errno);
    }
    if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
        return errno_msg(eb, "cannot create directory", cfg->data_dir, errno);
    }
    return token_generate(path, tok, eb);
}

int admin_auth_load_token(const struct torii_config *cfg, char **token_out, struct torii_errbuf *eb)
{
    char path[4096];
    char *tok = NULL;
    int rc = TORII_OK;
    int n;

    if (cfg->admin_token != NULL && cfg->admin_token[0] != '\0') {
        *token_out = torii_xstrdup(cfg->admin_token);
        return TORII_OK;
    }
    TORII_ENSURE(cfg->data_dir != NULL && cfg->data_dir[0] != '\0',
                 torii_errf(eb, TORII_EINVAL, "admin: no token and no data_dir"));
    n = snprintf(path, sizeof(path), "%s/%s", cfg->data_dir, ADMIN_TOKEN_FILE);
    TORII_ENSURE(n > 0 && (size_t)n < sizeof(path),
                 torii_errf(eb, TORII_EINVAL, "admin: data_dir path too long"));
    /* Two rounds: a concurrent first start may create the file between open and create. */
    for (int round = 0; round < 2 && tok == NULL; round++) {
        rc = token_load_round(cfg, path, &tok, eb);
        if (rc == TORII_EEXIST) {
            rc = TORII_OK;
            continue;
        }
        TORII_TRY(rc);
    }
    TORII_ENSURE(tok != NULL, torii_errf(eb, TORII_EIO, "admin: cannot obtain a token"));
    *token_out = tok;
    tok = NULL;
out:
    if (tok != NULL) {
        torii_secure_free(tok, strlen(tok));
    }
    return rc;
}

static int secret_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && CRYPTO_memcmp(a, b, alen) == 0;
}

/* "<scheme> <rest>" with a case-insensitive scheme; rest trimmed. */
static int auth_param(const struct torii_slice *v, const char *scheme, struct torii_slice *rest)
{
    size_t n = strlen(scheme);
    size_t i = n;

    if (v->len <= n || (v->ptr[n] != ' ' && v->ptr[n] != '\t')
        || !torii_slice_eq_ci((struct torii_slice){v->ptr, n}, scheme)) {
        return 0;
    }
    while (i < v->len && (v->ptr[i] == ' ' || v->ptr[i] == '\t')) {
        i++;
    }
    rest->ptr = v->ptr + i;
    rest->len = v->len - i;
    return rest->len > 0;
}

const char *admin_auth_scheme(const struct torii_http_req *req)
{
    const struct torii_slice *a = torii_http_req_header(req, "Authorization");
    struct torii_slice rest;

    if (a != NULL) {
        if (auth_param(a, "Bearer", &rest)) {
            return "bearer";
        }
        if (auth_param(a, "Basic", &rest)) {
            return "basic";
        }
        return "unknown";
    }
    if (torii_http_req_header(req, "Otoroshi-Client-Secret") != NULL) {
        return "otoroshi";
    }
    return "none";
}

static void auth_sha256(const void *p, size_t len, unsigned char out[32])
{
    unsigned int n = 32;

    if (EVP_Digest(p, len, out, &n, EVP_sha256(), NULL) != 1) {
        memset(out, 0, 32); /* matches no configured hash of a real digest */
        out[0] = 1;
    }
}

void admin_auth_sha256_hex(const char *s, size_t len, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char d[32];

    auth_sha256(s, len, d);
    for (size_t i = 0; i < 32; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[64] = '\0';
}

int admin_tokens_init(const struct torii_config *cfg, struct admin_tokens *out,
                      struct torii_errbuf *eb)
{
    char *tok = NULL;
    int rc = TORII_OK;

    memset(out, 0, sizeof(*out));
    TORII_TRY(admin_auth_load_token(cfg, &tok, eb));
    TORII_ASSERT(tok != NULL); /* set on success */
    out->t = torii_xcalloc(cfg->n_admin_tokens + 1, sizeof(*out->t));
    for (size_t i = 0; i < cfg->n_admin_tokens; i++) {
        const struct torii_conf_token *c = &cfg->admin_token_list[i];
        (void)snprintf(out->t[i].id, sizeof(out->t[i].id), "%s", c->id);
        memcpy(out->t[i].sha256, c->sha256, sizeof(c->sha256));
        out->t[i].scopes = c->scopes;
    }
    out->n = cfg->n_admin_tokens + 1;
    (void)snprintf(out->t[cfg->n_admin_tokens].id, sizeof(out->t[0].id), "admin");
    auth_sha256(tok, strlen(tok), out->t[cfg->n_admin_tokens].sha256);
    out->t[cfg->n_admin_tokens].scopes = TORII_SCOPE_ALL;
    out->client_id = torii_xstrdup(cfg->admin_client_id != NULL && cfg->admin_client_id[0] != '\0'
                                       ? cfg->admin_client_id
                                       : "admin");
out:
    if (tok != NULL) {
        torii_secure_free(tok, strlen(tok));
    }
    return rc;
}

void admin_tokens_clear(struct admin_tokens *tt)
{
    if (tt->t != NULL) {
        torii_secure_free(tt->t, tt->n * sizeof(*tt->t));
    }
    free(tt->client_id);
    memset(tt, 0, sizeof(*tt));
}

/* The token whose hash is that of secret: every token compared, no early exit. */
static const struct admin_token *auth_match(const struct admin_tokens *tt, const char *secret,
                                            size_t len)
{
    unsigned char d[32];
    const struct admin_token *hit = NULL;

    auth_sha256(secret, len, d);
    for (size_t i = 0; i < tt->n; i++) {
        int eq = CRYPTO_memcmp(d, tt->t[i].sha256, sizeof(d)) == 0;
        hit = eq && hit == NULL ? &tt->t[i] : hit;
    }
    OPENSSL_cleanse(d, sizeof(d));
    return hit;
}

/* The token of (user, secret): user must be the token's id or the client id. */
static const struct admin_token *auth_user_match(const struct admin_tokens *tt, const char *user,
                                                 size_t ulen, const char *secret, size_t slen)
{
    const struct admin_token *t = auth_match(tt, secret, slen);
    int id_ok = 0;

    if (t != NULL) {
        id_ok = secret_eq(user, ulen, t->id, strlen(t->id));
        id_ok |= secret_eq(user, ulen, tt->client_id, strlen(tt->client_id));
    }
    return id_ok ? t : NULL;
}

static const struct admin_token *auth_basic(const struct admin_tokens *tt, struct torii_slice b64)
{
    unsigned char *dec = NULL;
    size_t n = 0;
    const char *colon;
    const struct admin_token *t = NULL;

    if (b64.len == 0 || b64.len > ADMIN_BASIC_MAX_B64
        || torii_b64_decode(b64.ptr, b64.len, &dec, &n) != TORII_OK) {
        return NULL;
    }
    colon = memchr(dec, ':', n);
    if (colon != NULL) {
        size_t idlen = (size_t)(colon - (const char *)dec);
        t = auth_user_match(tt, (const char *)dec, idlen, colon + 1, n - idlen - 1);
    }
    torii_secure_free(dec, n);
    return t;
}

const struct admin_token *admin_tokens_check(const struct admin_tokens *tt,
                                             const struct torii_http_req *req)
{
    const struct torii_slice *a = torii_http_req_header(req, "Authorization");
    const struct torii_slice *id = torii_http_req_header(req, "Otoroshi-Client-Id");
    const struct torii_slice *sec = torii_http_req_header(req, "Otoroshi-Client-Secret");
    struct torii_slice rest;

    if (a != NULL) {
        if (auth_param(a, "Bearer", &rest)) {
            return auth_match(tt, rest.ptr, rest.len);
        }
        if (auth_param(a, "Basic", &rest)) {
            return auth_basic(tt, rest);
        }
        return NULL;
    }
    if (id != NULL && sec != NULL) {
        return auth_user_match(tt, id->ptr, id->len, sec->ptr, sec->len);
    }
    return NULL;
}
