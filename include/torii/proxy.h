/* proxy.h - the public listeners, the worker threads that serve them, and the HTTP/1.1
 * reverse proxy: routes compiled from the configuration, the streaming engine (client <->
 * upstream bufferevents with watermarks), the per-worker upstream keep-alive pool, the
 * /.well-known/ hook and the access log.
 * Each worker owns one libevent event_base, its own SO_REUSEPORT sockets for the https and
 * http listeners, every connection accepted on them, and its own upstream pool and target
 * health (no state shared between workers but the immutable routes).
 * Threads: routes are any thread (immutable after publish); start/stop from the main thread
 * only; the workers run their loops (worker thread only for everything per connection).
 * Ownership: cfg, table, tls and routes are borrowed and must outlive the workers. */
#ifndef TORII_PROXY_H
#define TORII_PROXY_H

#include <sys/socket.h>

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "torii/conf.h"
#include "torii/err.h"
#include "torii/http.h"
#include "torii/table.h"
#include "torii/tls.h"

/* ---- routes ------------------------------------------------------------------------------ */

/** One backend target: "[http://|https://]host:port" resolved once at compile time. */
struct torii_route_target {
    char *name;     /* "host:port" as configured (for logs and the default SNI) */
    char *host;     /* host part, without brackets */
    uint16_t port;  /* 80/443 by default for http:// / https:// */
    int tls;        /* https:// */
    unsigned index; /* 0..torii_routes_n_targets()-1, unique across all routes */
    struct sockaddr_storage addr;
    int addrlen;
};

/** backend.tls: handed to the TLS module for upstream connections. */
struct torii_route_backend_tls {
    char *trusted_ca;  /* certificate id, NULL: the system trust store */
    char *client_cert; /* certificate id presented to the backend, or NULL */
    char *sni;         /* server name to send, NULL: the target host (none for an IP) */
};

/** client_auth: which client certificates a route accepts at the edge (edge mTLS). */
struct torii_route_client_auth {
    enum torii_tls_client_auth_mode mode;
    char **trusted_cas; /* certificate ids of the CAs that may sign client certificates */
    size_t n_trusted_cas;
    struct torii_tls_client_auth policy; /* for the TLS context; trust set by bind_tls */
};

/** backend.protocol: how requests reach the targets. */
enum torii_route_protocol {
    TORII_ROUTE_HTTP1 = 0, /* "http1" (default): HTTP/1.1, one request per connection at a time */
    TORII_ROUTE_H2,        /* "h2": HTTP/2 over TLS (ALPN h2), https targets only */
    TORII_ROUTE_H2C,       /* "h2c": HTTP/2 with prior knowledge over cleartext, http targets */
};

struct torii_route_backend {
    struct torii_route_target *targets;
    size_t n_targets;
    struct torii_route_backend_tls tls;
    int has_tls;         /* "tls" given */
    uint32_t connect_ms; /* 5000: connect (TCP + TLS) deadline; then 504 */
    uint32_t read_ms;    /* 60000: wait for (and between bytes of) a response; then 504 */
    uint32_t idle_ms;    /* 60000: idle pooled connection lifetime */
    uint32_t max_idle;   /* 32: idle pooled connections per target and worker */
    enum torii_route_protocol protocol;
    uint32_t h2_connections;            /* 2: HTTP/2 connections per target and worker (h2, h2c) */
    struct torii_tls_upstream *tls_ctx; /* https targets; made by torii_routes_bind_tls */
};

struct torii_route_jwt;

struct torii_route {
    unsigned index; /* position in routes[] */
    char **hosts;   /* lower-cased, exact names, "*.suffix", or "*" (the default route) */
    size_t n_hosts;
    struct torii_route_backend backend;
    struct torii_route_client_auth client_auth;
    struct torii_route_jwt *jwt; /* routes[].jwt (jwtroute.h), NULL: none */
    char **upgrades;             /* routes[].upgrades: lower-cased tokens (["websocket"]) */
    size_t n_upgrades;
    int no_http2; /* routes[].http2 false: ALPN h2 not offered for its names */
};

struct torii_routes;

/** Validate cfg->routes and compile them into an immutable table. Every error names the
 * route index and key, e.g. "routes[1].backend.targets[0]: ...": unknown keys, wrong types,
 * bad host patterns, a host claimed by two routes, bad targets (unresolvable names too: host
 * names are resolved here, once), bad timeouts, bad tls/client_auth shapes. An absent or empty
 * routes[] compiles to an empty table. TORII_EINVAL (eb) or TORII_ENOMEM. */
int torii_routes_compile(const struct torii_config *cfg, struct torii_routes **out,
                         struct torii_errbuf *eb) TORII_MUST_USE;
/** The same, without stopping at the first problem: each is appended to errs as
 * "config: routes[i]...: problem" (also: backend.tls with a plain http target, a second
 * route with "*"). TORII_EINVAL (*out NULL) when any was found. */
int torii_routes_check(const struct torii_config *cfg, struct torii_routes **out,
                       struct torii_conf_errs *errs) TORII_MUST_USE;
/** Runtime step after compile (not done by --check-config): build the TLS objects the routes
 * need from the certificate table (borrowed; must outlive the routes): the trust set of each
 * client_auth and the upstream TLS context of each backend with an https target. Main thread,
 * before the routes are published. TORII_EINVAL/TORII_ETLS with the route named in eb. */
/** torii_tls_h2_cb over a struct torii_routes (arg): 0 when the route serving the TLS server
 * name (len bytes; NULL: the default route) says http2 false, else 1. Any thread. */
int torii_routes_h2_allowed(void *arg, const char *name, size_t len);
int torii_routes_bind_tls(struct torii_routes *r, struct torii_table *table,
                          struct torii_errbuf *eb) TORII_MUST_USE;
/** NULL accepted. */
void torii_routes_free(struct torii_routes *r);

/** The route serving host name (not NUL-terminated; a trailing dot and case are ignored; no
 * port): exact name first, then the one-label wildcard, then the default route ("*"), which
 * also serves host NULL (no SNI) and names no route can hold (IPv6 literals). NULL when none.
 * Allocation-free. */
const struct torii_route *torii_routes_match(const struct torii_routes *r, const char *host,
                                             size_t len);
size_t torii_routes_count(const struct torii_routes *r);
const struct torii_route *torii_routes_get(const struct torii_routes *r, size_t i);
/** Number of targets over all routes (target->index ranges over it). */
size_t torii_routes_n_targets(const struct torii_routes *r);

/** Client-auth policy for a TLS server name (the client-hello callback's question): the
 * matching route's client_auth, or NULL when no route matches or it asks for none.
 * Allocation-free, lock-free; r may be NULL. */
const struct torii_route_client_auth *torii_routes_client_auth(const struct torii_routes *r,
                                                               const char *name, size_t len);
/** The same as a torii_tls_client_auth_lookup_cb: arg is the const struct torii_routes *. */
const struct torii_tls_client_auth *torii_routes_tls_lookup(void *arg, const char *host,
                                                            size_t len);

/* ---- header rewriting (pure; exposed for tests) ----------------------------------------- */

/** Split a Host value into its host part (brackets kept for IPv6) and validate it: reg-name
 * characters, an IPv4 address or a bracketed IPv6 address, and an optional numeric port.
 * The host is normalized into out (TORII_SNI_NAME_MAX + 1 bytes: lower-cased, trailing dot
 * removed). Returns its length, or TORII_EINVAL. */
int torii_proxy_host_parse(struct torii_slice host, char *out) TORII_MUST_USE;

/** What the proxy adds to a forwarded request. */
struct torii_proxy_fwd {
    const char *client_ip;                /* "1.2.3.4" or "2001:db8::1" */
    int https;                            /* X-Forwarded-Proto / Forwarded proto */
    struct torii_slice host;              /* Host to send (as received, or the SNI for HTTP/1.0) */
    struct torii_slice client_cert;       /* RFC 9440 Client-Cert value, empty: none */
    struct torii_slice client_cert_chain; /* RFC 9440 Client-Cert-Chain value, empty: none */
    enum torii_http_body_kind body;       /* NONE, LENGTH (Content-Length) or CHUNKED */
    uint64_t body_length;
    const struct torii_slice *drop; /* more client fields to drop (case-insensitive names) */
    size_t n_drop;
    struct torii_slice extra;   /* "Name: value\r\n" lines appended as they are (routes[].jwt) */
    struct torii_slice upgrade; /* protocol to ask for (Connection: upgrade), empty: none */
};

/** Append the upstream request head for req to out, in one pass into one reserved region:
 * origin-form request line in HTTP/1.1; every field but the hop-by-hop ones (RFC 9110 section
 * 7.6.1: Connection, Keep-Alive, Proxy-Connection, TE, Transfer-Encoding, Upgrade, and every
 * field named in Connection), Expect (answered by the proxy), Content-Length (re-emitted from
 * the framing), and any incoming X-Forwarded-For/-Proto/-Host, Forwarded, Client-Cert and
 * Client-Cert-Chain, which are replaced by ours (RFC 7239 Forwarded: for, host, proto), and
 * the fields named in fwd->drop; fwd->extra is appended last. TORII_OK or TORII_ENOMEM. */
int torii_proxy_req_head_write(struct evbuffer *out, const struct torii_http_req *req,
                               const struct torii_proxy_fwd *fwd) TORII_MUST_USE;

/** What to do with the Upgrade field of a request (RFC 9110 section 7.8). */
enum torii_proxy_upgrade {
    TORII_PROXY_UPGRADE_NONE = 0, /* none asked (or only h2c, never forwarded): a plain request */
    TORII_PROXY_UPGRADE_FORWARD,  /* forward with Connection: upgrade + Upgrade: token */
    TORII_PROXY_UPGRADE_REFUSE,   /* answer status with msg, close the connection */
};

struct torii_proxy_upgrade_verdict {
    enum torii_proxy_upgrade what;
    struct torii_slice token; /* FORWARD: the protocol, into the request head */
    int websocket;            /* FORWARD: the token is "websocket" */
    int status;               /* REFUSE: 400 */
    char msg[160];            /* REFUSE: names the offending field or token */
};

/** Decide the upgrade of req (body: its framing) on a route allowing the allowed[] tokens
 * (lower-case; matched case-insensitively): h2c is dropped from every offer; a remaining
 * protocol must be a single token the route allows, listed in Connection, asked by an
 * HTTP/1.1 request without a body; websocket also needs method GET, a Sec-WebSocket-Key of
 * 16 bytes in base64 and a Sec-WebSocket-Version (RFC 6455 section 4.1). Pure. */
void torii_proxy_upgrade_decide(const struct torii_http_req *req, enum torii_http_body_kind body,
                                char *const *allowed, size_t n_allowed,
                                struct torii_proxy_upgrade_verdict *v);

/** How the proxy frames a response body towards the client. */
enum torii_proxy_out_framing {
    TORII_PROXY_OUT_NONE = 0, /* no body: the upstream's Content-Length kept (HEAD, 304) */
    TORII_PROXY_OUT_LENGTH,   /* Content-Length: length */
    TORII_PROXY_OUT_CHUNKED,  /* Transfer-Encoding: chunked (re-framed) */
    TORII_PROXY_OUT_CLOSE,    /* close-delimited (HTTP/1.0 client, unknown length) */
};

/** Append the client response head for resp: status line in HTTP/1.1, every field but the
 * hop-by-hop ones and the upstream's framing, then our framing and Connection (close, or
 * keep-alive for an HTTP/1.0 client); a 101 gets no framing, the upstream's Upgrade and
 * Connection: upgrade instead. TORII_OK or TORII_ENOMEM. */
int torii_proxy_resp_head_write(struct evbuffer *out, const struct torii_http_resp *resp,
                                enum torii_proxy_out_framing framing, uint64_t length, int close,
                                int client_minor) TORII_MUST_USE;

typedef void (*torii_proxy_field_cb)(void *arg, const struct torii_http_header *h);
/** The fields of resp that torii_proxy_resp_head_write keeps with that framing (the same
 * rules: hop-by-hop and framing fields dropped, the upstream's Content-Length kept for
 * framing NONE), in order, each passed to cb: for a client that takes the head as fields
 * (HTTP/2), which then adds its own framing. */
void torii_proxy_resp_fields(const struct torii_http_resp *resp,
                             enum torii_proxy_out_framing framing, torii_proxy_field_cb cb,
                             void *arg);

/* ---- /.well-known/ hook ----------------------------------------------------------------- */

/* Contract: torii answers /.well-known/ paths itself, on both listeners and for any Host,
 * before route matching (and before the http -> https redirect). torii_wellknown_handle is
 * called for every request whose path starts with "/.well-known/". It finds the first entry
 * of a static dispatch table (wellknown.c) whose prefix matches the path and calls its
 * handler, which fills the reply (status, content type, body appended to reply->body, up to
 * TORII_WELLKNOWN_MAX_EXTRA extra headers) and returns TORII_OK; the proxy sends it (HEAD
 * gets no body). A handler runs on a worker thread: it must not block (no LMDB write, no
 * network), and reads shared state only through thread-safe interfaces (certificate table,
 * immutable snapshots). When no entry matches, TORII_ENOTFOUND: the proxy answers 404 JSON.
 * The proxy reads a request body (Content-Length or chunked) into memory before the handler
 * runs and passes it as req->body/req->body_len (NULL/0 without a body); a body over
 * TORII_WELLKNOWN_MAX_BODY is answered 413 without calling the handler, and that connection
 * closes. req and its body are borrowed for the call only. */

struct torii_wellknown;

#define TORII_WELLKNOWN_MAX_EXTRA 4
#define TORII_WELLKNOWN_MAX_BODY  ((size_t)64 * 1024) /* request body buffered for a handler */

struct torii_wellknown_reply {
    int status;               /* 200 by default */
    const char *content_type; /* static string or NULL */
    struct evbuffer *body;    /* empty on entry; the handler appends the body */
    struct torii_http_header extra[TORII_WELLKNOWN_MAX_EXTRA]; /* static or reply-owned */
    size_t n_extra;
};

struct torii_pki_state;

/** What the handlers may use (borrowed; each must outlive the workers). pki: the state the
 * built-in PKI's public paths (wellknown_pki.c: JWKS, OCSP, CA issuers, CRLs) serve from;
 * NULL: those paths answer 404. */
struct torii_acme_chal;
struct torii_wellknown_opts {
    const struct torii_config *cfg;
    struct torii_table *table;
    struct torii_pki_state *pki;
    /* ACME HTTP-01: /.well-known/acme-challenge/<token> on the plain http listener answers
     * from this challenge table (acme.h); NULL: every token is unknown (404). */
    struct torii_acme_chal *acme_chal;
};

int torii_wellknown_new(const struct torii_wellknown_opts *opts, struct torii_wellknown **out)
    TORII_MUST_USE;
/** NULL accepted. */
void torii_wellknown_free(struct torii_wellknown *wk);

/** Serve req if its path is one of ours. https: the request came on the TLS listener.
 * Returns TORII_OK (reply filled), TORII_ENOTFOUND (not ours: answer 404) or another code
 * (answer 500). Worker thread only. */
int torii_wellknown_handle(struct torii_wellknown *wk, const struct torii_http_req *req, int https,
                           struct torii_wellknown_reply *reply) TORII_MUST_USE;

/* ---- workers ----------------------------------------------------------------------------- */

struct torii_workers;

struct torii_daemon;
struct torii_listen_socks;

/** What the workers serve with (all borrowed; each must outlive the workers). */
struct torii_workers_opts {
    const struct torii_config *cfg;
    struct torii_table *table;
    struct torii_tls_ctx *tls;
    const struct torii_routes *routes;
    struct torii_daemon *daemon;              /* each loop's beat "worker-<i>"; NULL: none */
    struct torii_pki_state *pki;              /* /.well-known PKI paths, routes[].jwt keys */
    struct torii_acme_chal *acme_chal;        /* ACME HTTP-01 answers (NULL: none) */
    const struct torii_listen_socks *inherit; /* sockets to take over, or NULL */
};

/** Bind every listener socket (errors reported here, synchronously) and start the workers.
 * With a daemon (NULL: none), each worker loop attaches a beat "worker-<i>" (daemon.h). On
 * EMFILE/ENFILE/ENOBUFS/ENOMEM from accept a worker disables its listeners for 50 ms, doubled
 * up to 1 s while accept keeps failing, instead of spinning on the readable listener.
 * Inherited sockets (o->inherit, borrowed: duplicated) whose kind, slot and address match are
 * taken over, the others bound: a connection waiting in a kept socket's accept queue is
 * never lost. Without a PKI state (o->pki NULL) the /.well-known PKI paths answer 404 and
 * routes[].jwt refuses every token. */
int torii_workers_start(const struct torii_workers_opts *o, struct torii_workers **out,
                        struct torii_errbuf *eb) TORII_MUST_USE;

/** One listening socket of one worker, as handed to the next workers (reload) or the next
 * process (upgrade). kind: 0 https, 1 http; slot: the worker index; addr: the listen.* string
 * it was opened for. */
struct torii_listen_sock {
    int kind;
    unsigned slot;
    char addr[128];
    int fd;
};
struct torii_listen_socks {
    const struct torii_listen_sock *v;
    size_t n;
};
/** The listening sockets (fds borrowed: valid until the workers drain), at most cap. */
size_t torii_workers_listeners(const struct torii_workers *ws, struct torii_listen_sock *out,
                               size_t cap);
/** Stop accepting (the listeners close) and finish the connections: every response says
 * Connection: close; stop = 1 also closes keep-alive connections idle after a request at
 * once. Each loop ends with its last connection (torii_workers_drained). Main thread. */
void torii_workers_drain(struct torii_workers *ws, int stop);
/** 1 when every worker loop has ended (NULL accepted). Any thread. */
int torii_workers_drained(const struct torii_workers *ws);
/** Stop accepting, close connections, join and free; NULL accepted. Returns the number of
 * connections that still had a request in flight (cut off). */
unsigned torii_workers_stop(struct torii_workers *w);

/* ---- generations ------------------------------------------------------------------------ */

/* A generation is one configuration at work: config, compiled routes, TLS context and
 * workers. A reload starts a new one on the sockets of the current one and drains the old
 * one; connections finish under the generation that accepted them. Main thread only. */
struct torii_proxy_gen;

struct torii_proxy_gen_opts {
    struct torii_config *cfg; /* owned by the generation (on success) when own_cfg */
    int own_cfg;
    struct torii_routes *routes; /* compiled, not bound: owned by the generation on success */
    struct torii_table *table;   /* borrowed; outlives the generation */
    torii_tls_ocsp_staple_cb ocsp_staple;
    void *ocsp_staple_arg;
    torii_tls_acme_alpn_cb acme_alpn; /* TLS-ALPN-01 (tls.h); NULL: off */
    void *acme_alpn_arg;
    struct torii_acme_chal *acme_chal; /* borrowed: ACME HTTP-01 answers (NULL: none) */
    torii_tls_on_demand_cb on_demand;  /* on-demand certificates (tls.h); NULL: off */
    torii_tls_on_demand_done_cb on_demand_done;
    torii_tls_on_demand_pending_cb on_demand_pending;
    void *on_demand_arg;
    unsigned on_demand_wait_ms;
    const struct torii_listen_socks *inherit; /* sockets to take over, or NULL */
    struct torii_daemon *daemon;              /* each worker loop's beat (NULL: none) */
    struct torii_pki_state *pki;       /* borrowed: PKI public paths and JWT keys (NULL: none) */
    struct torii_tls_tickets *tickets; /* borrowed: shared ticket keys (tls.h); NULL: own */
    unsigned id;                       /* for the logs */
};

/** Bind the routes' TLS, make the TLS context, start the workers. On failure nothing is
 * taken (the caller still owns cfg and routes) and eb names the problem. */
int torii_proxy_gen_start(const struct torii_proxy_gen_opts *o, struct torii_proxy_gen **out,
                          struct torii_errbuf *eb) TORII_MUST_USE;
/** Stop accepting and finish the connections (see torii_workers_drain). */
void torii_proxy_gen_drain(struct torii_proxy_gen *g, int stop);
/** 1 once every connection of a draining generation has ended. */
int torii_proxy_gen_drained(const struct torii_proxy_gen *g);
/** Stop (cutting what is left), free; NULL accepted. Returns the connections cut off. */
unsigned torii_proxy_gen_free(struct torii_proxy_gen *g);
struct torii_tls_ctx *torii_proxy_gen_tls(const struct torii_proxy_gen *g);
const struct torii_config *torii_proxy_gen_config(const struct torii_proxy_gen *g);
unsigned torii_proxy_gen_id(const struct torii_proxy_gen *g);
/** The generation's listening sockets (see torii_workers_listeners). */
size_t torii_proxy_gen_listeners(const struct torii_proxy_gen *g, struct torii_listen_sock *out,
                                 size_t cap);

#endif
