/* A C program using libvlibclient.so through its header, driven by tests/mp_c_abi.rs.
 *
 *   client_test server SOCKET SERVER_PID EXPECT_SHM   everything against the real server
 *   client_test storm SOCKET N                        read N messages (id 99) through a ping storm
 *   client_test silent SOCKET MS                      stay silent for MS ms, then report pings
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

struct cb_state {
  atomic_int n;
  int reply_id;
  atomic_int bad;
  vlc_conn_t *conn;
};

static void on_message(void *user, const void *msg, size_t len) {
  struct cb_state *s = user;
  if (len != 18 || get_u16(msg) != s->reply_id) atomic_fetch_add(&s->bad, 1);
  /* The callback may not free its own connection: refused, nothing freed. */
  if (atomic_load(&s->n) == 0 && vlc_disconnect(s->conn) != VLC_E_INVAL) atomic_fetch_add(&s->bad, 1);
  atomic_fetch_add(&s->n, 1);
}

struct worker_arg {
  const char *path;
  uint32_t pid;
  int index;
};

/* One of several connections in the same process, each with its own thread. */
static void *worker(void *p) {
  struct worker_arg *a = p;
  char name[32];
  snprintf(name, sizeof name, "c-worker-%d", a->index);
  vlc_conn_t *c = NULL;
  CHECK(vlc_connect(a->path, name, NULL, &c) == VLC_OK);
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

static void run_server(const char *path, uint32_t pid, int expect_shm) {
  vlc_conn_t *c = NULL;
  vlc_options_t opts = {.struct_size = sizeof opts, .timeout_ms = 5000};

  /* Errors come back as codes, with a message. */
  CHECK(vlc_connect("/nonexistent/api.sock", "c", &opts, &c) == VLC_E_CONNECT);
  CHECK(strstr(vlc_last_error(), "/nonexistent/api.sock") != NULL);
  CHECK(vlc_connect(path, NULL, &opts, &c) == VLC_E_INVAL);
  CHECK(strcmp(vlc_strerror(VLC_E_NOT_AVAILABLE), "not available") == 0);

  CHECK(vlc_connect(path, "c-client", &opts, &c) == VLC_OK);
  CHECK(vlc_transport(c) == VLC_TRANSPORT_SOCKET);
  CHECK((vlc_client_index(c) & 0x80000000u) != 0);
  int ping = vlc_msg_id(c, "control_ping_51077d14");
  int reply = vlc_msg_id(c, "control_ping_reply_f6b0b8ca");
  CHECK(ping > 0 && reply > 0);
  CHECK(vlc_msg_id_crc(c, "control_ping", 0x51077d14) == ping);
  CHECK(vlc_msg_id(c, "no_such_message_12345678") == VLC_E_UNKNOWN_MSG);
  CHECK(vlc_msg_id_crc(c, "control_ping", 0xdeadbeef) == VLC_E_UNKNOWN_MSG);

  /* Request/reply through alloc/write/read, and through vlc_send. */
  CHECK(send_ping(c, ping, 1, 0) == VLC_OK);
  expect_ping_reply(c, reply, 1, pid);
  unsigned char raw[10];
  put_u16(raw, (uint16_t)ping);
  put_u32(raw, 2, vlc_client_index(c));
  put_u32(raw, 6, 2);
  CHECK(vlc_send(c, raw, sizeof raw, 0) == VLC_OK);
  expect_ping_reply(c, reply, 2, pid);
  CHECK(vlc_send(c, raw, 1, 0) == VLC_E_INVAL);

  /* Nothing else is pending. */
  void *m = NULL;
  size_t len = 0;
  CHECK(vlc_read(c, &m, &len, 0) == VLC_E_TIMEOUT);

  /* Pipelined: 1000 requests buffered, one flush, 1000 replies in order. */
  for (uint32_t i = 0; i < 1000; i++) CHECK(send_ping(c, ping, 1000 + i, VLC_SEND_MORE) == VLC_OK);
  CHECK(vlc_flush(c) == VLC_OK);
  for (uint32_t i = 0; i < 1000; i++) expect_ping_reply(c, reply, 1000 + i, pid);

  /* Callback mode. */
  struct cb_state s = {.reply_id = reply, .conn = c};
  CHECK(vlc_set_rx_callback(c, on_message, &s) == VLC_OK);
  CHECK(vlc_read(c, &m, &len, 0) == VLC_E_CALLBACK_MODE);
  for (uint32_t i = 0; i < 100; i++) CHECK(send_ping(c, ping, 5000 + i, 0) == VLC_OK);
  for (int t = 0; t < 5000 && atomic_load(&s.n) < 100; t++) usleep(1000);
  CHECK(atomic_load(&s.n) == 100);
  CHECK(atomic_load(&s.bad) == 0);
  CHECK(vlc_set_rx_callback(c, NULL, NULL) == VLC_OK);
  CHECK(send_ping(c, ping, 6000, 0) == VLC_OK);
  expect_ping_reply(c, reply, 6000, pid);

  /* The pivot to shared memory. */
  int rc = vlc_pivot_to_shm(c, 64 << 20);
  if (expect_shm) {
    CHECK(rc == VLC_OK);
    CHECK(vlc_transport(c) == VLC_TRANSPORT_SHM);
  } else {
    CHECK(rc == VLC_E_NOT_AVAILABLE);
    CHECK(strstr(vlc_last_error(), "not available") != NULL);
    CHECK(vlc_transport(c) == VLC_TRANSPORT_SOCKET);
  }
  /* Either way the connection still works, now over whichever transport it has. */
  CHECK(send_ping(c, ping, 7000, 0) == VLC_OK);
  expect_ping_reply(c, reply, 7000, pid);
  vlc_conn_t *by_name = NULL;
  rc = vlc_attach_shm(NULL, "c-attach", NULL, &by_name);
  if (expect_shm) {
    CHECK(rc == VLC_OK);
    CHECK(vlc_disconnect(by_name) == VLC_OK);
  } else {
    CHECK(rc == VLC_E_NOT_AVAILABLE && by_name == NULL);
  }

  /* Several connections at once, one thread each. */
  pthread_t threads[3];
  struct worker_arg args[3];
  for (int i = 0; i < 3; i++) {
    args[i] = (struct worker_arg){.path = path, .pid = pid, .index = i};
    CHECK(pthread_create(&threads[i], NULL, worker, &args[i]) == 0);
  }
  for (int i = 0; i < 3; i++) CHECK(pthread_join(threads[i], NULL) == 0);

  CHECK(vlc_disconnect(c) == VLC_OK);
  printf("server ok\n");
}

static void run_storm(const char *path, int n) {
  vlc_conn_t *c = NULL;
  CHECK(vlc_connect(path, "c-storm", NULL, &c) == VLC_OK);
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

static void run_silent(const char *path, int ms) {
  vlc_conn_t *c = NULL;
  vlc_options_t opts = {.struct_size = sizeof opts, .idle_poll_ms = 10};
  CHECK(vlc_connect(path, "c-silent", &opts, &c) == VLC_OK);
  printf("connected\n");
  fflush(stdout);
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
  printf("answered %llu\n", (unsigned long long)vlc_keepalives_answered(c));
  CHECK(vlc_disconnect(c) == VLC_OK);
}

int main(int argc, char **argv) {
  if (argc == 5 && strcmp(argv[1], "server") == 0) {
    run_server(argv[2], (uint32_t)strtoul(argv[3], NULL, 10), atoi(argv[4]));
  } else if (argc == 4 && strcmp(argv[1], "storm") == 0) {
    run_storm(argv[2], atoi(argv[3]));
  } else if (argc == 4 && strcmp(argv[1], "silent") == 0) {
    run_silent(argv[2], atoi(argv[3]));
  } else {
    fprintf(stderr, "usage: client_test server|storm|silent SOCKET ...\n");
    return 2;
  }
  return 0;
}
