/*
 * delayproxy.c - a TCP proxy that holds every chunk DELAY ms in each
 * direction: added latency without a bandwidth cap, at wire speed.  The
 * benchmark's slow link (bench/run) is this proxy for the round trip plus
 * tc tbf on a veth pair for the bandwidth; the kernel here has no netem,
 * and tests/lib/countproxy.py (Python) tops out near 50 MB/s.
 *
 *   delayproxy DELAY_MS LISTEN_ADDR:PORT TARGET_ADDR:PORT
 *
 * Each direction of each connection is a reader thread, which stamps
 * every chunk with its due time and queues it, and a writer thread, which
 * sends chunks in order once due.  The queue is bounded (QUEUE_MAX bytes):
 * a slow receiver slows the reader, so TCP flow control still works end to
 * end.  Runs until killed.  Not a test.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256u << 10)
#define QUEUE_MAX (64u << 20)

struct chunk {
	struct chunk *next;
	struct timespec due;
	size_t len;
	char data[];
};

struct dir {
	int from, to;
	pthread_mutex_t lock; /* protects everything below */
	pthread_cond_t cond;
	struct chunk *head, *tail;
	size_t queued;
	int eof;
};

static long delay_ns;

static void add_ns(struct timespec *t, long ns)
{
	t->tv_nsec += ns;
	while (t->tv_nsec >= 1000000000L) {
		t->tv_nsec -= 1000000000L;
		t->tv_sec++;
	}
}

static void *reader(void *arg)
{
	struct dir *d = arg;
	for (;;) {
		struct chunk *c = malloc(sizeof(*c) + CHUNK);
		if (!c)
			break;
		ssize_t n = read(d->from, c->data, CHUNK);
		if (n <= 0) {
			free(c);
			break;
		}
		if ((size_t)n < CHUNK / 4) { /* small RPCs: do not pin 256 KiB each */
			struct chunk *s = realloc(c, sizeof(*c) + (size_t)n);
			if (s)
				c = s;
		}
		c->len = (size_t)n;
		c->next = NULL;
		clock_gettime(CLOCK_MONOTONIC, &c->due);
		add_ns(&c->due, delay_ns);
		pthread_mutex_lock(&d->lock);
		while (d->queued > QUEUE_MAX)
			pthread_cond_wait(&d->cond, &d->lock);
		if (d->tail)
			d->tail->next = c;
		else
			d->head = c;
		d->tail = c;
		d->queued += c->len;
		pthread_cond_broadcast(&d->cond);
		pthread_mutex_unlock(&d->lock);
	}
	pthread_mutex_lock(&d->lock);
	d->eof = 1;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

static void *writer(void *arg)
{
	struct dir *d = arg;
	for (;;) {
		pthread_mutex_lock(&d->lock);
		while (!d->head && !d->eof)
			pthread_cond_wait(&d->cond, &d->lock);
		struct chunk *c = d->head;
		pthread_mutex_unlock(&d->lock);
		if (!c)
			break;
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &c->due, NULL) == EINTR)
			;
		size_t off = 0;
		while (off < c->len) {
			ssize_t n = write(d->to, c->data + off, c->len - off);
			if (n <= 0)
				goto out;
			off += (size_t)n;
		}
		pthread_mutex_lock(&d->lock);
		d->head = c->next;
		if (!d->head)
			d->tail = NULL;
		d->queued -= c->len;
		pthread_cond_broadcast(&d->cond);
		pthread_mutex_unlock(&d->lock);
		free(c);
	}
out:
	shutdown(d->to, SHUT_WR);
	shutdown(d->from, SHUT_RD);
	return NULL;
}

static int parse_addr(const char *s, struct sockaddr_in *a)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)atoi(colon + 1));
	return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

struct conn {
	int c, s;
	struct dir up, down;
};

static void *serve(void *arg)
{
	struct conn *k = arg;
	pthread_t t[4];
	struct dir *ds[2] = {&k->up, &k->down};
	for (int i = 0; i < 2; i++) {
		pthread_mutex_init(&ds[i]->lock, NULL);
		pthread_cond_init(&ds[i]->cond, NULL);
		pthread_create(&t[2 * i], NULL, reader, ds[i]);
		pthread_create(&t[2 * i + 1], NULL, writer, ds[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	close(k->c);
	close(k->s);
	free(k);
	return NULL;
}

int main(int argc, char **argv)
{
	struct sockaddr_in la, ta;
	if (argc != 4 || parse_addr(argv[2], &la) || parse_addr(argv[3], &ta)) {
		fprintf(stderr, "usage: delayproxy DELAY_MS LISTEN_ADDR:PORT TARGET_ADDR:PORT\n");
		return 2;
	}
	delay_ns = (long)(atof(argv[1]) * 1e6);
	signal(SIGPIPE, SIG_IGN);
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)&la, sizeof(la)) || listen(l, 64)) {
		perror("delayproxy: listen");
		return 1;
	}
	for (;;) {
		int c = accept(l, NULL, NULL);
		if (c < 0)
			continue;
		int s = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(s, (struct sockaddr *)&ta, sizeof(ta))) {
			close(c);
			close(s);
			continue;
		}
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct conn *k = calloc(1, sizeof(*k));
		if (!k)
			return 1;
		k->c = c;
		k->s = s;
		k->up.from = c;
		k->up.to = s;
		k->down.from = s;
		k->down.to = c;
		pthread_t t;
		pthread_create(&t, NULL, serve, k);
		pthread_detach(t);
	}
}
