/*
 * vlibclient.h: the C interface of libvlibclient.so, a client of the VPP-style binary API
 * server (tools/api-server). Implemented in Rust: tools/vlibclient/src/ffi.rs.
 *
 * Model
 *   A vlc_conn_t is one registered connection. Messages are raw API messages: a big-endian
 *   16-bit message ID first, then the fields (requests carry client_index and context, see
 *   vlc_client_index). Look IDs up by name and CRC with vlc_msg_id; they differ between servers.
 *
 * Keepalive
 *   The server pings inactive shared-memory clients with memclnt_keepalive and drops those that
 *   do not answer. The library answers every ping itself and never returns one from vlc_read or
 *   to the callback. A background thread per connection answers pings while the program does not
 *   read, so a program may stay silent as long as it likes.
 *
 * Receiving
 *   Either pull (vlc_read with a timeout; the default), or push: vlc_set_rx_callback makes the
 *   library's thread call you with each message; vlc_read then returns VLC_E_CALLBACK_MODE.
 *   While nobody reads in pull mode, the background thread queues arriving messages, up to
 *   vlc_options_t.rx_queue_limit bytes; past that it stops reading (and answering pings).
 *
 * Errors
 *   Functions return VLC_OK (0) or a negative VLC_E_* code. After a failure, vlc_last_error()
 *   describes it; the string belongs to the calling thread and is valid until that thread's next
 *   failing call. No Rust panic crosses this interface: internal errors return VLC_E_PANIC.
 *
 * Threads
 *   Any number of connections per process; each is independent (VPP's "*2" functions: the handle
 *   is explicit). Every function may be called from any thread, concurrently, on the same handle,
 *   except vlc_disconnect, which must be the last call on a handle, with no other call running.
 *   Sends from several threads are serialised whole; reads from several threads each get
 *   different messages. A message buffer belongs to one owner at a time (see below).
 *
 * Message buffers
 *   vlc_msg_alloc and vlc_read return buffers that the caller owns until it passes them to
 *   vlc_msg_write (which sends and frees) or vlc_msg_free. They are 8-byte aligned.
 *
 * Shared memory
 *   vlc_pivot_to_shm moves a socket connection to a private shared-memory segment; the client
 *   index changes (read it again with vlc_client_index), the socket stays open, and the server
 *   closing it is how the library learns that the server has gone. vlc_attach_shm attaches to
 *   the server's named segment without a socket; there the segment's doorbell losing its reader
 *   tells the same. Either way a receive looks at the server's liveness at least every 20 ms,
 *   so a dead server shows as VLC_E_DISCONNECTED, not as a timeout. On shared memory every
 *   message is sent at once (VLC_SEND_MORE buffers nothing; vlc_flush has nothing to do).
 *   Attached by name in a process that leaves SIGPIPE at its default action, each send blocks
 *   SIGPIPE in the calling thread for its duration (a send to a dead server's doorbell raises
 *   it) and takes back the one it raised.
 */
#ifndef VLIBCLIENT_H
#define VLIBCLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes. */
#define VLC_OK 0
#define VLC_E_INVAL (-1)         /* NULL or invalid argument */
#define VLC_E_CONNECT (-2)       /* no server at the path, or registration refused */
#define VLC_E_TIMEOUT (-3)       /* nothing within the timeout */
#define VLC_E_DISCONNECTED (-4)  /* the server closed the connection, or it broke */
#define VLC_E_UNKNOWN_MSG (-5)   /* the server's table has no such message */
#define VLC_E_PROTOCOL (-6)      /* the server broke the protocol */
#define VLC_E_OS (-7)            /* a system call failed */
#define VLC_E_NOT_AVAILABLE (-8) /* the server does not offer it (shared memory) */
#define VLC_E_CALLBACK_MODE (-9) /* a receive callback is installed; vlc_read is disabled */
#define VLC_E_PANIC (-10)        /* internal error */

/* vlc_send / vlc_msg_write flags. */
#define VLC_SEND_MORE 1 /* buffer: more follows; written by the next send without it or vlc_flush */

/* vlc_transport results. */
#define VLC_TRANSPORT_SOCKET 0
#define VLC_TRANSPORT_SHM 1

typedef struct vlc_conn vlc_conn_t;

/* Connection settings; zero fields take the defaults. Set struct_size = sizeof(vlc_options_t). */
typedef struct vlc_options {
  uint32_t struct_size;
  uint32_t timeout_ms;     /* registration and blocked-send timeout (5000) */
  uint32_t max_msg_len;    /* longest message accepted from the server (64 MiB) */
  uint32_t idle_poll_ms;   /* how often the background thread looks for pings (100) */
  uint64_t rx_queue_limit; /* bytes queued for a program that does not read (64 MiB) */
} vlc_options_t;

/* A receive callback: called on the library's thread; msg is valid during the call only.
 * It must not unwind (no C++ exceptions through it). */
typedef void (*vlc_rx_fn)(void *user, const void *msg, size_t len);

/* Connects to the API socket at path, registers as name (at most 63 bytes), loads the message
 * table, and starts the connection's background thread. opts may be NULL. */
int vlc_connect(const char *path, const char *name, const vlc_options_t *opts, vlc_conn_t **out);

/* Connects to the server's named shared-memory segment, /dev/shm/vpe-api (prefix NULL) or
 * /dev/shm/<prefix>-vpe-api (the server's --shm-prefix), without a socket: claims a slot, loads
 * the table the segment publishes, registers (memclnt_create_v2), starts the background thread.
 * VLC_E_CONNECT when no such segment, no free slot, or its server is gone. */
int vlc_attach_shm(const char *prefix, const char *name, const vlc_options_t *opts,
                   vlc_conn_t **out);

/* Moves the connection to a private shared-memory segment of segment_size bytes (0: the
 * server's default; at most 4 GiB - 1). Returns once registered over the segment; on failure the
 * connection stays on the socket. VLC_E_INVAL when already on shared memory or when called from
 * the receive callback; VLC_E_NOT_AVAILABLE when the server offers no shared memory. Another
 * thread blocked in vlc_read on the same handle delays it until that read returns. */
int vlc_pivot_to_shm(vlc_conn_t *c, uint64_t segment_size);

/* Stops the background thread, says goodbye (memclnt_delete on shared memory, then
 * sockclnt_delete on a socket), closes, frees c. NULL: no-op.
 * Not from inside the receive callback (VLC_E_INVAL, nothing freed). */
int vlc_disconnect(vlc_conn_t *c);

/* VLC_TRANSPORT_SOCKET or VLC_TRANSPORT_SHM. */
int vlc_transport(const vlc_conn_t *c);

/* The client index the server assigned; requests carry it (big-endian) after the message ID. */
uint32_t vlc_client_index(const vlc_conn_t *c);

/* Keepalive pings answered by the library on this connection. */
uint64_t vlc_keepalives_answered(const vlc_conn_t *c);

/* Message ID by "name_crc" ("control_ping_51077d14"), or by name and CRC; VLC_E_UNKNOWN_MSG. */
int vlc_msg_id(const vlc_conn_t *c, const char *name_crc);
int vlc_msg_id_crc(const vlc_conn_t *c, const char *name, uint32_t crc);

/* A zeroed buffer for a len-byte message (len >= 2), or NULL. */
void *vlc_msg_alloc(vlc_conn_t *c, size_t len);
/* Sends a buffer from vlc_msg_alloc (or vlc_read) and frees it, whatever the outcome. */
int vlc_msg_write(vlc_conn_t *c, void *msg, int flags);
/* Frees a buffer. NULL: no-op. */
void vlc_msg_free(void *msg);
/* The length of a buffer. */
size_t vlc_msg_len(const void *msg);

/* Sends a copy of len bytes at data (one whole message). */
int vlc_send(vlc_conn_t *c, const void *data, size_t len, int flags);
/* Writes everything buffered with VLC_SEND_MORE. */
int vlc_flush(vlc_conn_t *c);

/* Receives the next message (never a keepalive ping): *msg is a buffer to free with
 * vlc_msg_free, *len its length. timeout_ms < 0 waits without limit, 0 does not wait.
 * VLC_E_TIMEOUT if nothing came; VLC_E_DISCONNECTED once the server has gone. */
int vlc_read(vlc_conn_t *c, void **msg, size_t *len, int timeout_ms);

/* Installs a receive callback (NULL: back to vlc_read). Messages queued so far go to it first.
 * Called from any thread but the callback's, it returns once the previous callback is no longer
 * running, so its user pointer may be released then. */
int vlc_set_rx_callback(vlc_conn_t *c, vlc_rx_fn cb, void *user);

/* This thread's last error message ("" if none). */
const char *vlc_last_error(void);
/* A static description of a return code. */
const char *vlc_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif /* VLIBCLIENT_H */
