/* The C side of benches/clients.rs: control_ping through libvlibclient.so.
 *
 *   clients_bench SOCKET|pivot:SOCKET sync|pipelined N RUNS
 *
 * "pivot:SOCKET" connects, then moves the connection to shared memory (vlc_pivot_to_shm).
 * After one warm-up run, prints "run NS_PER_OP" for each of RUNS timed runs of N operations.
 * sync: one request in flight (alloc, write, read, free). pipelined: up to 256 in flight,
 * buffered with VLC_SEND_MORE and flushed once per refill (what the Rust clients do too; on
 * shared memory each one goes into the segment at once and the flush has nothing to do).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vlibclient.h"

#define WINDOW 256

static vlc_conn_t *c;
static int ping_id;

static void die(const char *what) {
  fprintf(stderr, "%s: %s\n", what, vlc_last_error());
  exit(1);
}

static void send_ping(uint32_t context, int flags) {
  unsigned char *m = vlc_msg_alloc(c, 10);
  if (!m) die("alloc");
  uint16_t id = htons((uint16_t)ping_id);
  uint32_t index = htonl(vlc_client_index(c)), ctx = htonl(context);
  memcpy(m, &id, 2);
  memcpy(m + 2, &index, 4);
  memcpy(m + 6, &ctx, 4);
  if (vlc_msg_write(c, m, flags) != VLC_OK) die("write");
}

static void read_reply(void) {
  void *m;
  size_t len;
  if (vlc_read(c, &m, &len, 10000) != VLC_OK) die("read");
  vlc_msg_free(m);
}

static void run_sync(long n) {
  for (long i = 0; i < n; i++) {
    send_ping((uint32_t)i + 1, 0);
    read_reply();
  }
}

static void run_pipelined(long n) {
  long sent = 0, done = 0;
  while (done < n) {
    if (sent < n && sent - done <= WINDOW / 2) {
      while (sent < n && sent - done < WINDOW) {
        send_ping((uint32_t)sent + 1, VLC_SEND_MORE);
        sent++;
      }
      if (vlc_flush(c) != VLC_OK) die("flush");
    }
    read_reply();
    done++;
  }
}

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: clients_bench SOCKET|pivot:SOCKET sync|pipelined N RUNS\n");
    return 2;
  }
  long n = atol(argv[3]);
  int runs = atoi(argv[4]);
  int pipelined = strcmp(argv[2], "pipelined") == 0;
  int pivot = strncmp(argv[1], "pivot:", 6) == 0;
  if (vlc_connect(pivot ? argv[1] + 6 : argv[1], "bench-c", NULL, &c) != VLC_OK) die("connect");
  if (pivot && vlc_pivot_to_shm(c, 0) != VLC_OK) die("pivot");
  ping_id = vlc_msg_id(c, "control_ping_51077d14");
  if (ping_id < 0) die("msg_id");
  for (int r = -1; r < runs; r++) {
    double t = now_ns();
    if (pipelined) run_pipelined(n); else run_sync(n);
    double per_op = (now_ns() - t) / (double)n;
    if (r >= 0) printf("run %.1f\n", per_op);
  }
  vlc_disconnect(c);
  return 0;
}
