/* A C program using libvlibclient.so through its header, driven by tests/mp_c_abi.rs.
 *
 *   client_test server SOCKET SERVER_PID PREFIX   everything against the real server, over the
 *                                                 socket, after a pivot, and attached by name
 *   client_test storm WHERE N                     read N messages (id 99) through a ping storm
 *   client_test silent WHERE MS                   stay silent for MS ms, then report pings
 *   client_test death WHERE                       wait for "go" on stdin (the server is killed
 *                                                 meanwhile), then send and read: errors, no crash
 *
 * WHERE is a socket path, "pivot:SOCKET" (connect, then move to shared memory) or "shm:PREFIX"
 * (attach to the named segment). The server mode takes the example plugin's message names from
 * the environment (VLC_TEST_<MESSAGE>=name_crc), so that they follow the definitions.
 *
 * Exits 0 on success; on failure prints what failed to stderr and exits 1.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vlibclient.h"

#define CHECK(cond)                                                                            \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
              vlc_last_error());                                                               \
      exit(1);                                                                                 \
    }                                                                                          \
  } while (0)

static uint32_t get_u32(const void *p, size_t off) {
  uint32_t v;
  memcpy(&v, (const char *)p + off, 4);
  return ntohl(v);
}

static uint16_t get_u16(const void *p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return ntohs(v);
}

static void put_u32(void *p, size_t off, uint32_t v) {
  v = htonl(v);
  memcpy((char *)p + off, &v, 4);
}

static void put_u16(void *p, uint16_t v) {
  v = htons(v);
  memcpy(p, &v, 2);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Connects as WHERE says (see the top of the file). */
static int open_conn(const char *where, const char *name, const vlc_options_t *opts,
                     vlc_conn_t **out) {
  if (strncmp(where, "shm:", 4) == 0) return vlc_attach_shm(where + 4, name, opts, out);
  int pivot = strncmp(where, "pivot:", 6) == 0;
  int rc = vlc_connect(pivot ? where + 6 : where, name, opts, out);
  if (rc != VLC_OK || !pivot) return rc;
  rc = vlc_pivot_to_shm(*out, 0);
  if (rc != VLC_OK) {
    vlc_disconnect(*out);
    *out = NULL;
  }
  return rc;
}

/* control_ping: id, client_index, context (10 bytes). */
static int send_ping(vlc_conn_t *c, int id, uint32_t context, int flags) {
  void *m = vlc_msg_alloc(c, 10);
  CHECK(m != NULL);
  CHECK(vlc_msg_len(m) == 10);
  put_u16(m, (uint16_t)id);
  put_u32(m, 2, vlc_client_index(c));
  put_u32(m, 6, context);
  return vlc_msg_write(c, m, flags);
}

/* Reads one control_ping_reply and checks it. */
static void expect_ping_reply(vlc_conn_t *c, int reply_id, uint32_t context, uint32_t pid) {
  void *m = NULL;
  size_t len = 0;
  CHECK(vlc_read(c, &m, &len, 5000) == VLC_OK);
  CHECK(len == 18 && vlc_msg_len(m) == 18);
  CHECK(get_u16(m) == reply_id);
  CHECK(get_u32(m, 2) == context);
  CHECK(get_u32(m, 6) == 0);                     /* retval */
  CHECK(get_u32(m, 10) == vlc_client_index(c)); /* client_index echoed */
  CHECK(get_u32(m, 14) == pid);                  /* vpe_pid */
  vlc_msg_free(m);
}

/* The example plugin's messages (layouts from example.api.json; strings are 64-byte arrays). */
struct ids {
  int ping, reply, add, add_reply, dump, details, want, want_reply, event;
};

static int id_from_env(vlc_conn_t *c, const char *var) {
  const char *name_crc = getenv(var);
  if (name_crc == NULL) {
    fprintf(stderr, "%s is not set\n", var);
    exit(1);
  }
  int id = vlc_msg_id(c, name_crc);
  CHECK(id > 0);
  return id;
}

static struct ids load_ids(vlc_conn_t *c) {
  struct ids ids = {
      .ping = vlc_msg_id(c, "control_ping_51077d14"),
      .reply = vlc_msg_id_crc(c, "control_ping_reply", 0xf6b0b8ca),
      .add = id_from_env(c, "VLC_TEST_SW_THING_ADD_DEL"),
      .add_reply = id_from_env(c, "VLC_TEST_SW_THING_ADD_DEL_REPLY"),
      .dump = id_from_env(c, "VLC_TEST_SW_THING_DUMP"),
      .details = id_from_env(c, "VLC_TEST_SW_THING_DETAILS"),
      .want = id_from_env(c, "VLC_TEST_WANT_SW_THING_EVENTS"),
      .want_reply = id_from_env(c, "VLC_TEST_WANT_SW_THING_EVENTS_REPLY"),
      .event = id_from_env(c, "VLC_TEST_SW_THING_EVENT"),
  };
  CHECK(ids.ping > 0 && ids.reply > 0);
  return ids;
}

/* sw_thing_add_del: id, client_index, context, is_add, name[64], count, enable (80 bytes). */
static void send_add_del(vlc_conn_t *c, const struct ids *ids, uint32_t context, int is_add,
                         const char *name, uint32_t count) {
  unsigned char m[80] = {0};
  put_u16(m, (uint16_t)ids->add);
  put_u32(m, 2, vlc_client_index(c));
  put_u32(m, 6, context);
  m[10] = (unsigned char)is_add;
  strncpy((char *)m + 11, name, 63);
  put_u32(m, 75, count);
  m[79] = 1;
  CHECK(vlc_send(c, m, sizeof m, 0) == VLC_OK);
}

/* want_sw_thing_events: id, client_index, context, enable, pid (15 bytes). */
static void send_want(vlc_conn_t *c, const struct ids *ids, uint32_t context, int enable) {
  unsigned char m[15] = {0};
  put_u16(m, (uint16_t)ids->want);
  put_u32(m, 2, vlc_client_index(c));
  put_u32(m, 6, context);
  m[10] = (unsigned char)enable;
  put_u32(m, 11, (uint32_t)getpid());
  CHECK(vlc_send(c, m, sizeof m, 0) == VLC_OK);
}

static void *read_msg(vlc_conn_t *c, size_t *len) {
  void *m = NULL;
  CHECK(vlc_read(c, &m, len, 5000) == VLC_OK);
  CHECK(*len >= 2);
  return m;
}

/* Requests, pipelining, events and a dump over whatever transport c has; `tag` names things. */
static void exercise(vlc_conn_t *c, const struct ids *ids, uint32_t pid, const char *tag) {
  /* Requests, one at a time. */
  for (uint32_t i = 1; i <= 50; i++) {
    CHECK(send_ping(c, ids->ping, i, 0) == VLC_OK);
    expect_ping_reply(c, ids->reply, i, pid);
  }
  /* Pipelined: 1000 requests buffered, one flush, 1000 replies in order. */
  for (uint32_t i = 0; i < 1000; i++) CHECK(send_ping(c, ids->ping, 1000 + i, VLC_SEND_MORE) == VLC_OK);
  CHECK(vlc_flush(c) == VLC_OK);
  for (uint32_t i = 0; i < 1000; i++) expect_ping_reply(c, ids->reply, 1000 + i, pid);

  /* Events: subscribe, add a thing, see the reply and the event (in either order). */
  char name[64];
  snprintf(name, sizeof name, "c-thing-%s", tag);
  size_t len = 0;
  send_want(c, ids, 3001, 1);
  void *m = read_msg(c, &len);
  CHECK(get_u16(m) == ids->want_reply && len == 10 && get_u32(m, 2) == 3001 && get_u32(m, 6) == 0);
  vlc_msg_free(m);
  send_add_del(c, ids, 3002, 1, name, 7);
  int got_reply = 0, got_event = 0;
  while (!(got_reply && got_event)) {
    m = read_msg(c, &len);
    if (get_u16(m) == ids->add_reply) {
      CHECK(len == 14 && get_u32(m, 2) == 3002 && get_u32(m, 6) == 0);
      got_reply++;
    } else {
      /* sw_thing_event: id, client_index, pid, thing_index, is_add, name[64] (79 bytes). */
      CHECK(get_u16(m) == ids->event && len == 79);
      CHECK(get_u32(m, 6) == (uint32_t)getpid());
      CHECK(((unsigned char *)m)[14] == 1);
      CHECK(strcmp((char *)m + 15, name) == 0);
      got_event++;
    }
    vlc_msg_free(m);
  }
  CHECK(got_reply == 1 && got_event == 1);

  /* A dump: the request and a control_ping with the same context, details until its reply. */
  unsigned char dump[10];
  put_u16(dump, (uint16_t)ids->dump);
  put_u32(dump, 2, vlc_client_index(c));
  put_u32(dump, 6, 3003);
  CHECK(vlc_send(c, dump, sizeof dump, VLC_SEND_MORE) == VLC_OK);
  CHECK(send_ping(c, ids->ping, 3003, 0) == VLC_OK);
  int found = 0, details = 0;
  for (;;) {
    m = read_msg(c, &len);
    CHECK(get_u32(m, 2) == 3003);
    if (get_u16(m) == ids->reply) {
      vlc_msg_free(m);
      break;
    }
    /* sw_thing_details: id, context, thing_index, name[64], count, enable (79 bytes). */
    CHECK(get_u16(m) == ids->details && len == 79);
    details++;
    if (strcmp((char *)m + 10, name) == 0) {
      CHECK(get_u32(m, 74) == 7);
      found++;
    }
    vlc_msg_free(m);
  }
  CHECK(found == 1 && details >= 1);

  /* Unsubscribe and clean up. */
  send_want(c, ids, 3004, 0);
  m = read_msg(c, &len);
  CHECK(get_u16(m) == ids->want_reply && get_u32(m, 2) == 3004);
  vlc_msg_free(m);
  send_add_del(c, ids, 3005, 0, name, 0);
  m = read_msg(c, &len);
  CHECK(get_u16(m) == ids->add_reply && get_u32(m, 2) == 3005 && get_u32(m, 6) == 0);
  vlc_msg_free(m);
  CHECK(vlc_read(c, &m, &len, 0) == VLC_E_TIMEOUT);
}

struct cb_state {
  atomic_int n;
  int reply_id;
  atomic_int bad;
  vlc_conn_t *conn;
};

static void on_message(void *user, const void *msg, size_t len) {
  struct cb_state *s = user;
  if (len != 18 || get_u16(msg) != s->reply_id) atomic_fetch_add(&s->bad, 1);
  /* The callback may not free its own connection, nor pivot it: refused, nothing changed. */
  if (atomic_load(&s->n) == 0) {
    if (vlc_disconnect(s->conn) != VLC_E_INVAL) atomic_fetch_add(&s->bad, 1);
    if (vlc_pivot_to_shm(s->conn, 0) != VLC_E_INVAL) atomic_fetch_add(&s->bad, 1);
  }
  atomic_fetch_add(&s->n, 1);
}

/* Callback mode: 100 pings answered through the callback, then back to vlc_read. With
 * `pivot`, the connection moves to shared memory while the callback is installed. */
static void callbacks(vlc_conn_t *c, const struct ids *ids, uint32_t pid, int pivot) {
  void *m = NULL;
  size_t len = 0;
  struct cb_state s = {.reply_id = ids->reply, .conn = c};
  CHECK(vlc_set_rx_callback(c, on_message, &s) == VLC_OK);
  CHECK(vlc_read(c, &m, &len, 0) == VLC_E_CALLBACK_MODE);
  if (pivot) {
    uint32_t socket_index = vlc_client_index(c);
    CHECK(vlc_pivot_to_shm(c, 1ull << 40) == VLC_E_INVAL); /* more than sock_init_shm asks */
    CHECK(vlc_transport(c) == VLC_TRANSPORT_SOCKET);
    CHECK(vlc_pivot_to_shm(c, 0) == VLC_OK);
    CHECK(vlc_transport(c) == VLC_TRANSPORT_SHM);
    CHECK(vlc_client_index(c) != socket_index);
    CHECK((vlc_client_index(c) & 0x80000000u) == 0);
    CHECK(vlc_pivot_to_shm(c, 0) == VLC_E_INVAL); /* once */
    CHECK(vlc_read(c, &m, &len, 0) == VLC_E_CALLBACK_MODE);
  }
  for (uint32_t i = 0; i < 100; i++) CHECK(send_ping(c, ids->ping, 5000 + i, 0) == VLC_OK);
  for (int t = 0; t < 5000 && atomic_load(&s.n) < 100; t++) usleep(1000);
  CHECK(atomic_load(&s.n) == 100);
  CHECK(atomic_load(&s.bad) == 0);
  CHECK(vlc_set_rx_callback(c, NULL, NULL) == VLC_OK);
  CHECK(send_ping(c, ids->ping, 6000, 0) == VLC_OK);
  expect_ping_reply(c, ids->reply, 6000, pid);
}

struct worker_arg {
  const char *where;
  uint32_t pid;
  int index;
};

/* One of several connections in the same process, each with its own thread. */
static void *worker(void *p) {
  struct worker_arg *a = p;
  char name[32];
  snprintf(name, sizeof name, "c-worker-%d", a->index);
  vlc_conn_t *c = NULL;
  CHECK(open_conn(a->where, name, NULL, &c) == VLC_OK);
  int ping = vlc_msg_id(c, "control_ping_51077d14");
  int reply = vlc_msg_id_crc(c, "control_ping_reply", 0xf6b0b8ca);
  CHECK(ping > 0 && reply > 0);
  for (uint32_t i = 1; i <= 500; i++) {
    CHECK(send_ping(c, ping, i, 0) == VLC_OK);
    expect_ping_reply(c, reply, i, a->pid);
  }
  CHECK(vlc_disconnect(c) == VLC_OK);
  return NULL;
}

static void run_server(const char *path, uint32_t pid, const char *prefix) {
  vlc_conn_t *c = NULL;
  vlc_options_t opts = {.struct_size = sizeof opts, .timeout_ms = 5000};

  /* Errors come back as codes, with a message. */
  CHECK(vlc_connect("/nonexistent/api.sock", "c", &opts, &c) == VLC_E_CONNECT);
  CHECK(strstr(vlc_last_error(), "/nonexistent/api.sock") != NULL);
  CHECK(vlc_connect(path, NULL, &opts, &c) == VLC_E_INVAL);
  CHECK(vlc_attach_shm("no-such-prefix-here", "c", &opts, &c) == VLC_E_CONNECT);
  CHECK(c == NULL);
  CHECK(strcmp(vlc_strerror(VLC_E_NOT_AVAILABLE), "not available") == 0);

  CHECK(vlc_connect(path, "c-client", &opts, &c) == VLC_OK);
  CHECK(vlc_transport(c) == VLC_TRANSPORT_SOCKET);
  CHECK((vlc_client_index(c) & 0x80000000u) != 0);
  struct ids ids = load_ids(c);
  CHECK(vlc_msg_id_crc(c, "control_ping", 0x51077d14) == ids.ping);
  CHECK(vlc_msg_id(c, "no_such_message_12345678") == VLC_E_UNKNOWN_MSG);
  CHECK(vlc_msg_id_crc(c, "control_ping", 0xdeadbeef) == VLC_E_UNKNOWN_MSG);

  /* Request/reply through vlc_send too. */
  unsigned char raw[10];
  put_u16(raw, (uint16_t)ids.ping);
  put_u32(raw, 2, vlc_client_index(c));
  put_u32(raw, 6, 2);
  CHECK(vlc_send(c, raw, sizeof raw, 0) == VLC_OK);
  expect_ping_reply(c, ids.reply, 2, pid);
  CHECK(vlc_send(c, raw, 1, 0) == VLC_E_INVAL);
  void *m = NULL;
  size_t len = 0;
  CHECK(vlc_read(c, &m, &len, 0) == VLC_E_TIMEOUT);

  exercise(c, &ids, pid, "socket");
  callbacks(c, &ids, pid, 0);

  /* The pivot to shared memory, with a receive callback installed: a new client index, the
   * same table, the callback called with what arrives over the segment. */
  callbacks(c, &ids, pid, 1);
  exercise(c, &ids, pid, "pivot");
  callbacks(c, &ids, pid, 0);

  /* Attached by name: no socket at all. */
  vlc_conn_t *by_name = NULL;
  CHECK(vlc_attach_shm(prefix, "c-attach", &opts, &by_name) == VLC_OK);
  CHECK(vlc_transport(by_name) == VLC_TRANSPORT_SHM);
  CHECK((vlc_client_index(by_name) & 0x80000000u) == 0);
  CHECK(vlc_pivot_to_shm(by_name, 0) == VLC_E_INVAL);
  struct ids named_ids = load_ids(by_name);
  CHECK(named_ids.add == ids.add && named_ids.event == ids.event);
  exercise(by_name, &named_ids, pid, "named");
  callbacks(by_name, &named_ids, pid, 0);
  CHECK(vlc_disconnect(by_name) == VLC_OK);

  /* Several connections at once, one thread each, over every transport. */
  char pivot_where[512], shm_where[512];
  snprintf(pivot_where, sizeof pivot_where, "pivot:%s", path);
  snprintf(shm_where, sizeof shm_where, "shm:%s", prefix);
  const char *wheres[3] = {path, pivot_where, shm_where};
  pthread_t threads[3];
  struct worker_arg args[3];
  for (int i = 0; i < 3; i++) {
    args[i] = (struct worker_arg){.where = wheres[i], .pid = pid, .index = i};
    CHECK(pthread_create(&threads[i], NULL, worker, &args[i]) == 0);
  }
  for (int i = 0; i < 3; i++) CHECK(pthread_join(threads[i], NULL) == 0);

  CHECK(vlc_disconnect(c) == VLC_OK);
  printf("server ok\n");
}

static void run_storm(const char *where, int n) {
  vlc_conn_t *c = NULL;
  CHECK(open_conn(where, "c-storm", NULL, &c) == VLC_OK);
  int keepalive = vlc_msg_id(c, "memclnt_keepalive_51077d14");
  CHECK(keepalive > 0);
  printf("connected\n");
  fflush(stdout);
  for (int i = 0; i < n; i++) {
    void *m = NULL;
    size_t len = 0;
    CHECK(vlc_read(c, &m, &len, 10000) == VLC_OK);
    CHECK(get_u16(m) != keepalive);
    CHECK(len == 6 && get_u16(m) == 99);
    CHECK(get_u32(m, 2) == (uint32_t)i);
    vlc_msg_free(m);
  }
  printf("answered %llu\n", (unsigned long long)vlc_keepalives_answered(c));
  CHECK(vlc_disconnect(c) == VLC_OK);
}

static void run_silent(const char *where, int ms) {
  vlc_conn_t *c = NULL;
  vlc_options_t opts = {.struct_size = sizeof opts, .idle_poll_ms = 10};
  CHECK(open_conn(where, "c-silent", &opts, &c) == VLC_OK);
  printf("connected\n");
  fflush(stdout);
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
  printf("answered %llu\n", (unsigned long long)vlc_keepalives_answered(c));
  CHECK(vlc_disconnect(c) == VLC_OK);
}

/* The server dies while this program is on shared memory: the first send after the death may
 * or may not go through (into the dead server's segment), but must not kill the program (a
 * named segment's doorbell is a FIFO, and a write to it raises SIGPIPE once the server is
 * gone); the read that follows reports the disconnection instead of timing out. The background
 * thread looks only every 60 s here, so this thread is the first to touch the connection. */
static void run_death(const char *where) {
  vlc_conn_t *c = NULL;
  vlc_options_t opts = {.struct_size = sizeof opts, .idle_poll_ms = 60000};
  CHECK(open_conn(where, "c-doomed", &opts, &c) == VLC_OK);
  int ping = vlc_msg_id(c, "control_ping_51077d14");
  CHECK(ping > 0);
  printf("ready\n");
  fflush(stdout);
  char line[16];
  CHECK(fgets(line, sizeof line, stdin) != NULL && strncmp(line, "go", 2) == 0);
  int rc = send_ping(c, ping, 1, 0);
  CHECK(rc == VLC_OK || rc == VLC_E_DISCONNECTED);
  void *m = NULL;
  size_t len = 0;
  double t = now_ms();
  rc = vlc_read(c, &m, &len, 10000);
  double waited = now_ms() - t;
  CHECK(rc == VLC_E_DISCONNECTED);
  printf("disconnected after %.0f ms\n", waited);
  CHECK(send_ping(c, ping, 2, 0) == VLC_E_DISCONNECTED);
  CHECK(vlc_read(c, &m, &len, 0) == VLC_E_DISCONNECTED);
  CHECK(vlc_disconnect(c) == VLC_OK);
  printf("survived\n");
}

int main(int argc, char **argv) {
  if (argc == 5 && strcmp(argv[1], "server") == 0) {
    run_server(argv[2], (uint32_t)strtoul(argv[3], NULL, 10), argv[4]);
  } else if (argc == 4 && strcmp(argv[1], "storm") == 0) {
    run_storm(argv[2], atoi(argv[3]));
  } else if (argc == 4 && strcmp(argv[1], "silent") == 0) {
    run_silent(argv[2], atoi(argv[3]));
  } else if (argc == 3 && strcmp(argv[1], "death") == 0) {
    run_death(argv[2]);
  } else {
    fprintf(stderr, "usage: client_test server|storm|silent|death WHERE ...\n");
    return 2;
  }
  return 0;
}
