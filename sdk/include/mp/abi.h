/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mysqlprobe plugin ABI, version 1.
 *
 * The only contract between the host and a plugin. C99, no dependencies beyond <stdint.h> and
 * <stddef.h>. Read docs/plugin-abi.md for the rules in prose; every declaration below carries
 * OWNERSHIP, THREADING and SINCE lines.
 *
 * Versioning:
 *  - MP_ABI_MAJOR changes only on an incompatible change; the entry symbol name carries it
 *    (mp_plugin_entry_v1), so a plugin of another major is not even found by a host.
 *  - MP_ABI_MINOR grows when fields or functions are appended to the END of a struct. Every
 *    struct that can grow starts with `struct_size`. A 1.x host loads any 1.y plugin with y <= x.
 *  - Nothing is ever removed, reordered or retyped within a major.
 */
/* NOLINTBEGIN */
#ifndef MP_ABI_H
#define MP_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MP_ABI_MAJOR 1
#define MP_ABI_MINOR 7

#if defined(_WIN32)
#define MP_EXPORT __declspec(dllexport)
#else
#define MP_EXPORT __attribute__((visibility("default")))
#endif

/** Name of the one symbol a plugin exports. */
#define MP_ENTRY_SYMBOL "mp_plugin_entry_v1"

/* ---------------------------------------------------------------------------------------------
 * Basic types
 * ------------------------------------------------------------------------------------------- */

/** Status codes returned by hooks and services. */
typedef int32_t mp_status;
#define MP_OK 0      /* success */
#define MP_RETRY 1   /* transient failure: try again later (sinks: keep the report) */
#define MP_ERROR 2   /* permanent failure */
#define MP_EINVAL 3  /* bad argument */
#define MP_ENOMEM 4  /* a bound was reached */
#define MP_ENOENT 5  /* no such key / item */
#define MP_EAGAIN 6  /* queue full: the item was dropped and counted */
#define MP_ECLOSED 7 /* the peer or object is closed */
#define MP_EPERM 8   /* not authorized (SINCE 1.1) */

/** A borrowed string view; NOT NUL-terminated unless stated. SINCE: 1.0 */
typedef struct mp_str {
    const char* data;
    size_t len;
} mp_str;

/** A borrowed byte view. SINCE: 1.0 */
typedef struct mp_bytes {
    const uint8_t* data;
    size_t len;
} mp_bytes;

/** Opaque, host-owned handle identifying one plugin instance to the host. */
typedef struct mp_host mp_host;
/** Opaque read-only view of one plugin instance's validated configuration. */
typedef struct mp_config mp_config;
/** Opaque host-owned counter. */
typedef struct mp_counter mp_counter;
/** Opaque host-owned timer. */
typedef struct mp_timer mp_timer;
/** Opaque host-owned HTTP response being built. */
typedef struct mp_http_response mp_http_response;
/** Opaque host-owned websocket connection. */
typedef struct mp_ws_conn mp_ws_conn;

/* Plugin kinds: the slot a plugin fills. */
#define MP_KIND_CAPTURE 1
#define MP_KIND_DECODER 2
#define MP_KIND_CLUSTER 3
#define MP_KIND_SINK 4
#define MP_KIND_SOURCE 5 /* SINCE 1.4: produces records from something else than frames */

/* Log levels. */
#define MP_LOG_TRACE 0
#define MP_LOG_DEBUG 1
#define MP_LOG_INFO 2
#define MP_LOG_WARN 3
#define MP_LOG_ERROR 4

/* ---------------------------------------------------------------------------------------------
 * Properties: what a plugin accepts in its configuration. The host validates YAML against them
 * before anything starts; unknown keys, wrong types and out-of-range values are refused.
 * ------------------------------------------------------------------------------------------- */
#define MP_PROP_BOOL 1
#define MP_PROP_INT 2         /* int64; min/max enforced when min < max */
#define MP_PROP_DOUBLE 3      /* min/max enforced (as integers) when min < max */
#define MP_PROP_STRING 4      /* choices enforced when non-NULL: "a|b|c" */
#define MP_PROP_STRING_LIST 5 /* YAML sequence of scalars, or one comma-separated string */
#define MP_PROP_JSON                                                     \
    6 /* SINCE 1.5: any YAML value (a map, a list of maps...), read with \
         config_get_str as JSON text: plain scalars that read as null,   \
         booleans or numbers become those, all others strings. At most   \
         1 MiB of JSON and 32 levels deep. */

#define MP_PROP_REQUIRED 1u /* must be set: a default is ignored */
#define MP_PROP_SECRET 2u   /* never printed (passwords, keys) */

/**
 * One configuration property. A table of them ends with an entry whose name is NULL.
 * OWNERSHIP: static storage in the plugin.
 * SINCE: 1.0
 */
typedef struct mp_property {
    const char* name;          /* lower_snake_case key */
    uint32_t type;             /* MP_PROP_* */
    uint32_t flags;            /* MP_PROP_REQUIRED | MP_PROP_SECRET */
    const char* default_value; /* textual default (YAML scalar syntax) or NULL for none */
    const char* description;   /* one line */
    int64_t min;               /* bounds for INT/DOUBLE, inclusive; ignored when min >= max */
    int64_t max;
    const char* choices; /* STRING: allowed values "a|b|c", or NULL */
} mp_property;

/* ---------------------------------------------------------------------------------------------
 * Data crossing the boundary
 * ------------------------------------------------------------------------------------------- */

/* Event types for emit() / on_event(). */
#define MP_EVENT_REPORT 1    /* payload: one report, content_type "application/json" */
#define MP_EVENT_INPUT_END 2 /* a capture (or, SINCE 1.5, a source) has read all of its input */
/* decoder -> host: its section of the interval's report, a JSON object whose members are added
 * to the report (the answer to MP_EVENT_COLLECT) */
#define MP_EVENT_PARTIAL 3
/* host -> decoder (on_event of worker 0, on the report thread): the interval ended; emit
 * MP_EVENT_PARTIAL for all workers before returning */
#define MP_EVENT_COLLECT 4
/* SINCE 1.4, host -> every running plugin built for 1.4 or later but the cluster plugin: this
 * node's cluster role changed; payload "master", "slave" or "standalone" (host_get "cluster.role",
 * "cluster.master") */
#define MP_EVENT_ROLE 5

/**
 * A generic event: a report, a partial report, an end-of-input notice.
 * OWNERSHIP: borrowed for the duration of the call, both directions. Copy what you keep.
 * SINCE: 1.0
 */
typedef struct mp_event {
    uint32_t struct_size;
    uint32_t type;       /* MP_EVENT_* */
    uint64_t ts_ns;      /* event time (packet time in offline mode) */
    uint64_t seq;        /* sequence number where meaningful (reports: interval sequence) */
    mp_str content_type; /* e.g. "application/json" */
    mp_bytes payload;
} mp_event;

/**
 * A record (SINCE 1.4): the second kind of data after reports. A producer (a source, a decoder,
 * any plugin) emits records on named streams; the sinks (and, since 1.5, the cluster plugin)
 * subscribed to a stream (their slot's `records:` list) receive each one, in order per producer,
 * and say when it is delivered. The host tells the producer, in order, up to which `seq` every
 * subscriber has delivered (on_delivered), so that it can checkpoint. OWNERSHIP: borrowed for the
 * call, both directions (the host copies what it keeps). SINCE: 1.4
 */
typedef struct mp_record {
    uint32_t struct_size;
    uint32_t flags;      /* 0 */
    mp_str stream;       /* "binlog.rows": lower-case letters, digits, '_' and '-' in words
                            joined by '.', 1 to 64 bytes */
    mp_str key;          /* routing and ordering key; may be empty; at most 255 bytes */
    mp_str id;           /* a unique id for the record (dedupe downstream); empty: the sink
                            derives one from node, producer and seq */
    mp_str content_type; /* "application/json" */
    mp_bytes payload;
    uint64_t ts_ns;  /* event time */
    uint64_t seq;    /* per producer instance, strictly increasing (gaps allowed), from 1 */
    mp_str producer; /* set by the host when it hands the record to a sink: the producer's slot
                        ("sources[0]", "decoder[1]"); ignored in emit_record() */
} mp_record;

/* Standard capture counters (SINCE 1.3). A capture plugin that registers counters under these
 * names (counter_register) has them in the report's `capture` object and in the table output,
 * whatever the plugin is called; the host sums them over every capture instance. */
#define MP_CAPTURE_KERNEL_DROPPED "kernel_dropped"       /* gauge: dropped by the kernel */
#define MP_CAPTURE_INTERFACE_DROPPED "interface_dropped" /* gauge: dropped by the interface */
#define MP_CAPTURE_TRUNCATED "truncated_total" /* counter: frames cut by the snapshot length */

/* Link types of captured frames: the DLT_* numbers of libpcap (tcpdump.org/linktypes.html). */
#define MP_LINK_NULL 0
#define MP_LINK_ETHERNET 1
#define MP_LINK_RAW 101
#define MP_LINK_LINUX_SLL 113
#define MP_LINK_LINUX_SLL2 276

/**
 * One captured link-layer frame, as a capture plugin hands it to the host.
 * OWNERSHIP: borrowed for the call to emit_frames().
 * SINCE: 1.0
 */
typedef struct mp_frame {
    uint64_t ts_ns;     /* capture time, ns since the Unix epoch */
    uint32_t link_type; /* MP_LINK_* / DLT_* */
    uint32_t orig_len;  /* length on the wire (>= data.len when truncated by snaplen) */
    uint32_t source;    /* index of the device or file within the capture plugin */
    uint32_t flags;     /* MP_FRAME_* */
    mp_bytes data;
} mp_frame;

/* mp_frame.flags */
#define MP_FRAME_WAIT 1u /* offline input: the host waits for queue room instead of dropping */
/* SINCE 1.1: more frames of the same read follow at once (a capture handing frames over one at
 * a time): the host puts off its per-call work (publishing counters, waking workers) until a
 * call whose last frame has no MP_FRAME_MORE; emit_frames(host, NULL, 0) ends such a read. */
#define MP_FRAME_MORE 2u

/* Directions of a stream. */
#define MP_DIR_TO_SERVER 0
#define MP_DIR_TO_CLIENT 1

/* mp_flow.flags */
#define MP_FLOW_MIDSTREAM 1u /* the handshake was not seen: the connection started earlier */

/**
 * A TCP connection as the decoder sees it.
 * OWNERSHIP: borrowed for the call to stream_open().
 * SINCE: 1.0
 */
typedef struct mp_flow {
    uint32_t struct_size;
    uint32_t flags;     /* MP_FLOW_* */
    uint64_t id;        /* unique per host process */
    uint8_t ip_version; /* 4 or 6 */
    uint8_t pad[3];
    uint16_t client_port;
    uint16_t server_port;
    uint8_t client_ip[16]; /* IPv4 in the first 4 bytes */
    uint8_t server_ip[16];
    uint64_t ts_ns; /* first packet seen */
} mp_flow;

/* Reasons for stream_close(). */
#define MP_CLOSE_FIN 1
#define MP_CLOSE_RST 2
#define MP_CLOSE_IDLE 3     /* evicted after the idle timeout */
#define MP_CLOSE_EVICTED 4  /* evicted because a table bound was reached */
#define MP_CLOSE_SHUTDOWN 5 /* the host is stopping or the input ended */

/* ---------------------------------------------------------------------------------------------
 * HTTP and websocket on the host's server
 * ------------------------------------------------------------------------------------------- */

/**
 * An HTTP request received by the host's server.
 * OWNERSHIP: borrowed for the call to the handler.
 * SINCE: 1.0
 */
typedef struct mp_http_request {
    uint32_t struct_size;
    uint32_t reserved;
    mp_str method;      /* "GET", ... */
    mp_str path;        /* "/cluster/join", without the query */
    mp_str query;       /* raw query string without '?', percent-encoded */
    mp_str body;        /* at most the host's body limit; longer bodies are refused with 413 */
    mp_str remote_addr; /* "127.0.0.1:54321" */
    const void* impl;   /* host-private */
    /* SINCE 1.2 (check struct_size): who the host authenticated before calling the handler. */
    uint32_t role; /* the caller's role: MP_ROLE_ANYONE .. MP_ROLE_ADMIN */
    uint32_t reserved2;
    mp_str principal; /* the token's name, "loopback" (protected mode) or "anonymous" */
} mp_http_request;

/* Roles (SINCE 1.2). A caller has one, from the token it presents (docs/security.md); a route or
 * websocket endpoint requires one. Each role includes the ones below it. 0 in a route or an
 * endpoint means "not said": the host then requires MP_ROLE_ADMIN, the safe default. */
#define MP_ROLE_DEFAULT 0
#define MP_ROLE_ANYONE 1 /* no credentials needed (the host's /health) */
#define MP_ROLE_READ 2   /* reports, metrics, views of the cluster */
#define MP_ROLE_PEER 3   /* other nodes: push and pull reports, ask about them */
#define MP_ROLE_ADMIN 4  /* configuration, topology, keys, operations */

/* HTTP methods a route accepts (SINCE 1.2); HEAD is served wherever GET is. */
#define MP_HTTP_GET 1u
#define MP_HTTP_POST 2u
#define MP_HTTP_PUT 4u
#define MP_HTTP_DELETE 8u

/**
 * Handles one HTTP request; must call http_reply() once (else the host answers 500).
 * THREADING: any of the host's server threads, concurrently.
 */
typedef void (*mp_http_handler)(void* user, const mp_http_request* req, mp_http_response* resp);

/* Websocket opcodes for ws_send() / on_message. */
#define MP_WS_TEXT 1
#define MP_WS_BINARY 2

/**
 * Callbacks of one websocket endpoint.
 * OWNERSHIP: the host copies the struct at registration; `user` stays the plugin's.
 * THREADING: all three run on the connection's own server thread, serialized per connection;
 * different connections run concurrently.
 * SINCE: 1.0
 */
/* mp_ws_handler.flags (SINCE 1.5) */
/* The endpoint serves Server-Sent Events (text/event-stream) to a plain GET instead of websocket
 * upgrades: on_open decides as for a websocket (MP_OK: 200 and the stream), ws_send(MP_WS_TEXT)
 * sends one event (each line of the message a `data:` line), ws_close ends the stream, on_close
 * follows; on_message is never called (what the client sends is discarded); ping_interval_ms
 * sends a comment line; idle_timeout_ms does not apply. */
#define MP_WS_SSE 1u
/* SINCE 1.6, with MP_WS_SSE: named events. The first line of each message is the event's name
 * (an `event:` line; empty: none, the client's default "message"), the lines after it the data
 * (`init\n{...}` sends `event: init`, `data: {...}`). */
#define MP_WS_SSE_EVENTS 2u

typedef struct mp_ws_handler {
    uint32_t struct_size;
    uint32_t flags; /* MP_WS_SSE (SINCE 1.5), MP_WS_SSE_EVENTS (SINCE 1.6); 0 before */
    void* user;
    /**
     * A client asks to upgrade; runs before the host answers. MP_OK accepts (what on_open sends
     * is queued until the upgrade is done); MP_EPERM refuses with HTTP 401, anything else with
     * 403 (SINCE 1.1; 1.0 hosts upgraded first and then closed with 1008).
     */
    mp_status (*on_open)(void* user, mp_ws_conn* conn, const mp_http_request* req);
    /** A complete message arrived (may be NULL: messages are then discarded). */
    void (*on_message)(void* user, mp_ws_conn* conn, uint32_t opcode, mp_bytes data);
    /** The connection is gone; `conn` is invalid after this returns. */
    void (*on_close)(void* user, mp_ws_conn* conn);
    /* SINCE 1.1: this endpoint's limits; 0 takes the host's default. */
    /** Keepalive: the host pings each client this often (0: host default of no pings). */
    uint32_t ping_interval_ms;
    /** A client that sends nothing (pongs included) this long is closed with 1001. */
    uint32_t idle_timeout_ms;
    /** A send that blocks longer closes the client (counted as a slow client). */
    uint32_t write_timeout_ms;
    /** A larger incoming message closes the client with 1009. */
    uint32_t max_message_bytes;
    /** Outgoing messages queued per client; beyond it the oldest is dropped (counted). */
    uint32_t queue_messages;
    /* SINCE 1.2 */
    /** Role a client needs to open (MP_ROLE_*). 0, and every 1.0/1.1 endpoint: MP_ROLE_ADMIN. */
    uint32_t role;
    uint32_t reserved2;
} mp_ws_handler;

/**
 * An HTTP route with its access rule (SINCE 1.2), for http_route_ex().
 * OWNERSHIP: copied at registration; `user` stays the plugin's.
 */
typedef struct mp_route {
    uint32_t struct_size;
    uint32_t role;    /* MP_ROLE_* a caller needs; 0: MP_ROLE_ADMIN */
    uint32_t methods; /* MP_HTTP_* accepted (others get 405); 0: MP_HTTP_GET */
    uint32_t reserved;
    mp_http_handler handler;
    void* user;
} mp_route;

/**
 * Where a decoder's report() writes the report's members (SINCE 1.3).
 * OWNERSHIP: host-owned, valid for the call to report(); `text` is copied.
 */
typedef struct mp_writer {
    uint32_t struct_size;
    uint32_t reserved;
    void* ctx;
    void (*write)(void* ctx, mp_str text);
} mp_writer;

/* ---------------------------------------------------------------------------------------------
 * Host services: host -> plugin. APPEND ONLY.
 * ------------------------------------------------------------------------------------------- */

/* Counter kinds for counter_register(). */
#define MP_COUNTER 1 /* monotonically increasing */
#define MP_GAUGE 2   /* set to a value */

/**
 * The services table. One per host; passed to mp_plugin_entry_v1() and create().
 * Check MP_HOST_HAS(api, field) before calling anything added after 1.0.
 * OWNERSHIP: host-owned, valid until the process exits.
 * SINCE: 1.0
 */
typedef struct mp_host_api {
    uint32_t struct_size;
    uint16_t abi_major;
    uint16_t abi_minor;

    /** Log a message. THREADING: any thread. OWNERSHIP: msg borrowed. */
    void (*log)(mp_host* host, int level, mp_str msg);
    /** Attach an error message to the failing hook's status. THREADING: the hook's thread. */
    void (*set_error)(mp_host* host, mp_status code, mp_str msg);

    /**
     * Read a validated property of this instance (the default when unset).
     * Return MP_ENOENT for a key not in the property table, MP_EINVAL for the wrong type.
     * THREADING: only inside create(). OWNERSHIP: *out valid until create() returns.
     */
    mp_status (*config_get_str)(const mp_config* cfg, const char* key, mp_str* out);
    mp_status (*config_get_i64)(const mp_config* cfg, const char* key, int64_t* out);
    mp_status (*config_get_f64)(const mp_config* cfg, const char* key, double* out);
    mp_status (*config_get_bool)(const mp_config* cfg, const char* key, int* out);
    /** STRING_LIST: number of items, then items by index (MP_ENOENT past the end). */
    mp_status (*config_get_list_size)(const mp_config* cfg, const char* key, size_t* out);
    mp_status (*config_get_list_item)(const mp_config* cfg, const char* key, size_t index,
                                      mp_str* out);

    /**
     * Host-wide settings: "node.name", "server.address", "server.port", "interval.ms",
     * "host.version", "probe.workers", "instance.index" (decoder: worker number), "state.dir"
     * (the folder where plugins keep state: files named after the plugin; MP_ENOENT in an
     * offline run without a configuration file). Since 1.2:
     * "auth.mode" ("tokens" when access tokens are configured, else "protected"), and
     * "auth.peer_authorization": the Authorization header value this node presents to other
     * nodes ("Bearer ..."; MP_ENOENT when it has none). It is a secret: never log it.
     * THREADING: any thread. OWNERSHIP: *out valid until the process exits... for the values
     * fixed at start; "interval.ms" may change at run time: copy it.
     */
    mp_status (*host_get)(mp_host* host, const char* key, mp_str* out);

    /** Send an event downstream. Who may emit what: MP_EVENT_INPUT_END a capture or (SINCE
     *  1.5) a source with finite input (files): with no capture, the node stops once every
     *  source has sent it and its records are delivered;
     *  MP_EVENT_REPORT the cluster plugin (the node's one report stream), MP_EVENT_PARTIAL a
     *  1.0-1.2 decoder; any plugin sends other data as records (emit_record). Anything else is
     *  counted and, SINCE 1.5, refused with MP_EPERM (MP_OK before). Between start() and stop()
     *  only. THREADING: any thread. OWNERSHIP: ev borrowed. */
    mp_status (*emit)(mp_host* host, const mp_event* ev);
    /** Capture plugins: hand frames to the host. Never blocks: a full queue drops and counts
     *  (returns MP_EAGAIN). THREADING: one capture thread per source. OWNERSHIP: borrowed. */
    mp_status (*emit_frames)(mp_host* host, const mp_frame* frames, size_t count);
    /** Wall clock, ns since the Unix epoch. THREADING: any thread. */
    uint64_t (*now_ns)(mp_host* host);

    /**
     * Register a counter or gauge, exported as mysqlprobe_<plugin>_<name> on /metrics and in
     * the report's node stats. Registering the same name twice returns the same counter
     * (instances on several workers share it). THREADING: create() or start().
     * OWNERSHIP: host-owned, valid until the process exits.
     */
    mp_counter* (*counter_register)(mp_host* host, const char* name, const char* help,
                                    uint32_t kind);
    /** THREADING: any thread; atomic. */
    void (*counter_add)(mp_counter* counter, uint64_t delta);
    void (*counter_set)(mp_counter* counter, int64_t value);

    /**
     * Run fn(user) after delay_ns, then every period_ns (0: once). Timers run on the host's
     * timer thread, serialized. THREADING: start() .. stop(). OWNERSHIP: host-owned until
     * timer_stop(), which waits for a running callback and must not be called from inside it.
     */
    mp_timer* (*timer_start)(mp_host* host, uint64_t delay_ns, uint64_t period_ns,
                             void (*fn)(void* user), void* user);
    void (*timer_stop)(mp_timer* timer);

    /**
     * Serve `path` (exact match) on the host's HTTP server. Fails with MP_EINVAL when the path
     * is taken. SINCE 1.5 a path whose last segment is "*" ("/console/" and a star)
     * is a prefix route: every path under it that no exact route or longer prefix route takes
     * (the handler reads req->path). Whatever the
     * route, a handler only sees paths without "." or ".." segments, empty segments but the
     * last, '\\' or percent-encoded '.', '/', '\\' (the host answers 400), so a prefix route
     * may map them to files. THREADING: create() or start(); handlers run until stop() returns.
     */
    mp_status (*http_route)(mp_host* host, const char* path, mp_http_handler fn, void* user);
    /** Answer a request. OWNERSHIP: content_type and body copied. */
    void (*http_reply)(mp_http_response* resp, int status, mp_str content_type, mp_str body);
    /** Query parameter `name` of a request, percent-decoded; since 1.2 also the fields of an
     *  application/x-www-form-urlencoded POST body. OWNERSHIP: *out valid for the handler call.
     *  Return MP_ENOENT when absent. */
    mp_status (*http_query_param)(const mp_http_request* req, const char* name, mp_str* out);

    /** Serve websocket upgrades on `path`. THREADING: create() or start(). */
    mp_status (*ws_endpoint)(mp_host* host, const char* path, const mp_ws_handler* handler);
    /**
     * Queue one message for a connection. Never blocks: when the connection's queue is full
     * the OLDEST queued message is dropped, counted, and MP_EAGAIN returned. MP_ECLOSED once
     * the peer is gone. THREADING: any thread, while conn is valid (until on_close returns).
     * OWNERSHIP: data copied.
     */
    mp_status (*ws_send)(mp_ws_conn* conn, uint32_t opcode, mp_bytes data);
    /** Close a connection (on_close follows on its thread). THREADING: any thread. */
    void (*ws_close)(mp_ws_conn* conn, uint16_t code, mp_str reason);

    /** Ask the host to stop: exit_code 0 for a normal end, 2 for a fatal plugin error.
     *  THREADING: any thread. OWNERSHIP: reason copied. */
    void (*request_shutdown)(mp_host* host, int exit_code, mp_str reason);

    /* SINCE 1.2 */
    /**
     * Serve `path` with an access rule: the host answers 401 (no or a wrong token), 403 (a role
     * too low) and 405 (another method) itself; the handler sees only allowed requests, with
     * the caller's role and principal in the request. 1.0 http_route() is http_route_ex() with
     * role MP_ROLE_ADMIN and every method. THREADING: create() or start().
     */
    mp_status (*http_route_ex)(mp_host* host, const char* path, const mp_route* route);
    /**
     * A request header by name (case-insensitive). The host never shows a plugin the
     * Authorization header or a token given as a query parameter (MP_ENOENT).
     * OWNERSHIP: *out valid for the handler call.
     */
    mp_status (*http_header)(const mp_http_request* req, const char* name, mp_str* out);

    /* SINCE 1.3 */
    /**
     * Tell the host what it plans with about this instance (the other direction of host_get).
     * Keys: "capture.server_ports": comma-separated ports ("3306,3307") that mark the server
     * side of a connection (the host's stream layer uses every capture's ports together; 3306
     * when no capture gives any); "capture.threads": how many threads of this capture call
     * emit_frames ("1" lets the host run a single worker on that thread, with no queue).
     * Since 1.4, for any plugin: "records.backpressure": "drop" or "wait", what emit_record()
     * does when the host's record buffer is full (see emit_record). For the cluster plugin, at
     * any time from create() on and from any thread: "cluster.role" ("master", "slave" or
     * "standalone") and "cluster.master" (the master's name, "" for none); any plugin reads them
     * with host_get, and a change of role reaches the others as MP_EVENT_ROLE.
     * Return MP_ENOENT for a key this host does not know (a plugin may ignore it), MP_EINVAL for
     * a bad value. THREADING: create() only. OWNERSHIP: value copied.
     */
    mp_status (*host_set)(mp_host* host, const char* key, mp_str value);

    /* SINCE 1.4 */
    /**
     * Producers: hand one record to the sinks subscribed to its stream (copied; a record no sink
     * takes is counted and counts as delivered). What happens when the host's record buffer is
     * full is the producer's declared policy (host_set "records.backpressure" in create()):
     * "drop" (the default for captures and decoders: never blocks, MP_EAGAIN, the record is
     * dropped and counted) or "wait" (the default for sources: blocks until there is room;
     * MP_ECLOSED when the host stops meanwhile). MP_EINVAL for a bad stream name or a seq not
     * above the previous one. THREADING: any thread, between start() and stop().
     */
    mp_status (*emit_record)(mp_host* host, const mp_record* record);
    /**
     * Subscribers: the record given to on_record() with `token` is durably delivered (MP_OK: for a
     * broker, confirmed) or given up (any other status: the producer's delivered mark stops
     * before it). Exactly once per token. THREADING: any thread.
     */
    void (*record_done)(mp_host* host, uint64_t token, mp_status status);

    /* SINCE 1.7 */
    /**
     * Producers: emit_record for `count` records at once, records[0] first. The host takes a run
     * of records on one stream under one lock and wakes each sink once, instead of once per
     * record: for a producer of many small records (a binlog source) that is most of what a
     * record costs the host. Records are taken in order until one is not: the call answers that
     * record's status as emit_record would, and takes neither it nor any after it; `*taken` (may
     * be NULL) says how many were taken (all of them: MP_OK). An array of pointers, so that each
     * record keeps its own struct_size. THREADING, OWNERSHIP: as emit_record.
     */
    mp_status (*emit_records)(mp_host* host, const mp_record* const* records, size_t count,
                              size_t* taken);
} mp_host_api;

/** True when the host's table has field `f` (use before calling anything newer than 1.0). */
#define MP_HOST_HAS(api, f) \
    ((api)->struct_size >= offsetof(mp_host_api, f) + sizeof(((mp_host_api*)0)->f))

/* ---------------------------------------------------------------------------------------------
 * The plugin descriptor: plugin -> host. APPEND ONLY.
 * ------------------------------------------------------------------------------------------- */

/* mp_plugin.flags */
#define MP_FLAG_CONCURRENT_EVENTS 1u /* on_event may be called from several threads at once */

/**
 * What a plugin is and what it can do.
 * OWNERSHIP: static storage in the plugin, valid while the library is loaded (always).
 * THREADING: lifecycle hooks (create, start, stop, destroy) run on the host's control thread,
 * serialized. on_event is serialized per instance unless MP_FLAG_CONCURRENT_EVENTS.
 * Decoder stream hooks and on_tick run on the instance's own worker thread.
 * SINCE: 1.0
 */
typedef struct mp_plugin {
    uint32_t struct_size;          /* sizeof(mp_plugin) as the plugin was compiled */
    uint16_t abi_major;            /* MP_ABI_MAJOR */
    uint16_t abi_minor;            /* MP_ABI_MINOR */
    uint32_t kind;                 /* MP_KIND_* */
    uint32_t flags;                /* MP_FLAG_* */
    const char* name;              /* kebab-case, equals the YAML `plugin:` value */
    const char* version;           /* the plugin's own version, "1.2.3" */
    const char* description;       /* one line */
    const mp_property* properties; /* ends with a {NULL} entry; may be NULL */

    /** Make an instance from validated config. On failure call set_error and return non-OK.
     *  OWNERSHIP: *out_instance is the plugin's, until destroy(). REQUIRED. */
    mp_status (*create)(mp_host* host, const mp_host_api* api, const mp_config* cfg,
                        void** out_instance);
    /** Start threads and serving. May be NULL. */
    mp_status (*start)(void* instance);
    /** Stop within 5 s: join threads; no emit() after it returns. May be NULL. */
    void (*stop)(void* instance);
    /** Free the instance. REQUIRED. */
    void (*destroy)(void* instance);

    /** Receive an event: reports (cluster, sinks). May be NULL. OWNERSHIP: ev borrowed. */
    mp_status (*on_event)(void* instance, const mp_event* ev);
    /** Periodic tick in stream time (decoders: on the worker thread, at least once per
     *  interval, and once with the final time at end of input). May be NULL. */
    void (*on_tick)(void* instance, uint64_t ts_ns);

    /** Decoders: a new TCP connection. *out_stream is the plugin's until stream_close(). */
    mp_status (*stream_open)(void* instance, const mp_flow* flow, void** out_stream);
    /** Decoders: in-order bytes of one direction. OWNERSHIP: data borrowed. */
    void (*stream_data)(void* instance, void* stream, uint32_t dir, mp_bytes data, uint64_t ts_ns);
    /** Decoders: `len` bytes of one direction are missing (loss or capture gap). */
    void (*stream_gap)(void* instance, void* stream, uint32_t dir, uint64_t len, uint64_t ts_ns);
    /** Decoders: the connection ended; free the stream. */
    void (*stream_close)(void* instance, void* stream, uint32_t reason, uint64_t ts_ns);

    /* SINCE 1.3: decoder results per worker, without state shared between the instances.
     * Both or neither (a decoder with neither answers MP_EVENT_COLLECT as in 1.0). */
    /**
     * The interval ended: take this instance's results out (what it aggregated since the last
     * call) and return them as one opaque part (plugin-owned; NULL for nothing). THREADING: the
     * host's report thread, never while this instance's stream hooks or on_tick run (the host
     * holds the instance's worker for the call), so the instance needs no lock of its own.
     */
    void* (*collect)(void* instance, uint64_t seq, uint64_t ts_ns);
    /**
     * Once per interval, on worker 0's instance, after every worker's collect(): write the
     * report's members for these parts through `out` as JSON object members without the braces
     * (`"totals":{...},"templates":[...]`, or nothing), and free every part. `parts` holds one
     * entry per worker, in worker order (NULL where collect() returned NULL). THREADING: the
     * report thread, concurrently with worker 0's stream hooks: touch only the parts and what
     * does not change after create().
     */
    mp_status (*report)(void* instance, void* const* parts, size_t count, const mp_writer* out);

    /* SINCE 1.4: records */
    /**
     * Sinks and (SINCE 1.5) the cluster plugin: one record of a stream the slot subscribes to
     * (its `records:` list; a plugin whose slot subscribes must have this hook). Return MP_OK when
     * taken (then call record_done(token) once, later or from inside this call), MP_EAGAIN when
     * full: the host offers the same record again a little later. Anything else counts as given up.
     * THREADING: the instance's record thread (one per subscribing instance, the host's):
     * records in the order each producer emitted them. OWNERSHIP: record borrowed for the call.
     */
    mp_status (*on_record)(void* instance, const mp_record* record, uint64_t token);
    /**
     * Producers: every record this instance emitted with a seq up to `seq` has been delivered
     * by every sink subscribed to its stream (or taken by none). Called in increasing order,
     * never concurrently with itself, from a host thread; may be NULL.
     */
    void (*on_delivered)(void* instance, uint64_t seq);
} mp_plugin;

/**
 * The only symbol a plugin exports. Returns the plugin's descriptor, or NULL when the plugin
 * cannot run with this host (after calling nothing else).
 * OWNERSHIP: the returned descriptor is static. `host` is valid until the process exits.
 * THREADING: the host's control thread, once per library.
 * SINCE: 1.0
 */
typedef const mp_plugin* (*mp_plugin_entry_fn)(const mp_host_api* host);

#ifdef __cplusplus
}
#endif

#endif /* MP_ABI_H */
/* NOLINTEND */
