/* The twin suite's test container (cargo xtask qemu --test): one static ARM program, the only
 * file of its image, so the suite needs no registry and pulls nothing. Each verb prints what the
 * suite judges:
 *   status            CapEff, NoNewPrivs and Seccomp of /proc/self/status, the AppArmor
 *                     label, whether / is writable, and whether /proc/sysrq-trigger is
 *   listen PORT       serve TCP on PORT, answering "probe" to each connection, until killed
 *   connect IP PORT   "connected" or "refused: <why>" within 3 s
 *   sleep             wait until killed (a container to inspect from outside) */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void print_status_lines(void)
{
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "CapEff:", 7) || !strncmp(line, "NoNewPrivs:", 11) ||
		    !strncmp(line, "Seccomp:", 8))
			fputs(line, stdout);
	fclose(f);
}

static void print_label(void)
{
	char label[256] = "";
	int fd = open("/proc/self/attr/current", O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, label, sizeof label - 1);
	if (n > 0)
		label[strcspn(label, "\n")] = 0;
	printf("AppArmor:\t%s\n", n > 0 ? label : "none");
	if (fd >= 0)
		close(fd);
}

static void try_write(const char *what, const char *path, const char *data)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, strlen(data)) < 0)
		printf("%s:\tdenied (%s)\n", what, strerror(errno));
	else
		printf("%s:\twritten\n", what);
	if (fd >= 0)
		close(fd);
}

static int listen_on(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1, s = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 8)) {
		perror("listen");
		return 1;
	}
	printf("listening on %d\n", port);
	fflush(stdout);
	for (;;) {
		int c = accept(s, NULL, NULL);
		if (c >= 0) {
			(void)!write(c, "probe\n", 6);
			close(c);
		}
	}
}

static int connect_to(const char *ip, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct pollfd p;
	int err = 0;
	socklen_t len = sizeof err;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (s < 0 || inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
		printf("refused: bad address %s\n", ip);
		return 1;
	}
	if (connect(s, (struct sockaddr *)&a, sizeof a) && errno != EINPROGRESS) {
		printf("refused: %s\n", strerror(errno));
		return 1;
	}
	p.fd = s;
	p.events = POLLOUT;
	if (poll(&p, 1, 3000) != 1) {
		printf("refused: no answer in 3 s\n");
		return 1;
	}
	getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
	if (err) {
		printf("refused: %s\n", strerror(err));
		return 1;
	}
	printf("connected\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "status")) {
		print_status_lines();
		print_label();
		try_write("RootWrite", "/probe-was-here", "x");
		try_write("SysrqWrite", "/proc/sysrq-trigger", "h");
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "listen"))
		return listen_on(atoi(argv[2]));
	if (argc == 4 && !strcmp(argv[1], "connect"))
		return connect_to(argv[2], atoi(argv[3]));
	if (argc == 2 && !strcmp(argv[1], "sleep"))
		for (;;)
			pause();
	fprintf(stderr, "usage: probe status | listen PORT | connect IP PORT | sleep\n");
	return 2;
}
