/*
 * realxs_shim.c: an LD_PRELOAD library that lets Debian's real xenstored
 * (cxenstored 4.17, and oxenstored from the same package) run on a plain
 * Linux machine: no hypervisor, no /dev/xen, no /proc/xen.
 *
 * Theory of operation
 * -------------------
 * xenstored talks to Xen through a few library calls (libxenctrl,
 * libxenevtchn, libxengnttab; `nm -D --undefined-only xenstored` lists
 * them) and two files, /proc/xen/xsd_port and /proc/xen/xsd_kva. This
 * library defines those calls itself (the dynamic linker then never needs
 * the real ones to reach Xen) and intercepts open() of the two files.
 * Everything lives in RUNDIR = $XENSTORED_RUNDIR, the daemon's own run
 * directory:
 *
 *   RUNDIR/ring-<domid>  the 4096-byte shared page of <domid> (struct
 *                        xenstore_domain_interface). dom0's is what
 *                        /proc/xen/xsd_kva maps; a guest's is "grant
 *                        mapped" when INTRODUCE names it. A test maps the
 *                        same file to act as that guest (tests/realxs_guest.py).
 *   RUNDIR/port-<domid>  the local event-channel port bound to <domid>.
 *   RUNDIR/evtchn        a FIFO standing in for the event channel: 4 bytes,
 *                        a little-endian port number, are one event. Port 1
 *                        is VIRQ_DOM_EXC (xenstored re-scans its domains and
 *                        fires @releaseDomain); any other port wakes it to
 *                        service the guest rings.
 *   RUNDIR/domains       optional, read on every liveness query: lines
 *                        "<domid> running|dying|shutdown|crashed|gone".
 *
 * A domain exists if it is dom0, is introduced (has a bound port), or is in
 * $REALXS_DOMAINS ("1-10,42" or "all"), unless RUNDIR/domains says otherwise.
 *
 * Readiness: when $REALXS_READY_FD names a file descriptor, "ready\n" is
 * written to it and it is closed once dom0's page is mapped (cxenstored) or
 * dom0's port is bound (oxenstored). cxenstored has bound its socket before
 * that and enters its main loop right after, so the starter waits on a pipe
 * instead of polling for files; if the daemon dies first, the pipe reads EOF.
 *
 * xenevtchn_notify is a no-op: nothing tells a guest that a reply is in its
 * ring, a guest polls.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define PAGE_SIZE_ 4096
#define VIRQ_PORT 1
#define NR_PORTS 4096
#define DOMID_FIRST_RESERVED 0x7FF0U
#define SCAN_LIMIT 64 /* xc_domain_getinfo looks this far past a gap */

enum state { GONE, RUNNING, DYING, SHUTDOWN, CRASHED };

static void debug(const char *fmt, ...)
{
	static int on = -1;
	va_list ap;

	if (on < 0)
		on = getenv("REALXS_DEBUG") != NULL;
	if (!on)
		return;
	va_start(ap, fmt);
	fputs("[realxs-shim] ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

static const char *rundir(void)
{
	const char *dir = getenv("XENSTORED_RUNDIR");

	return dir ? dir : "/var/run/xenstored";
}

static void rundir_path(char *buf, size_t len, const char *fmt, unsigned int n)
{
	char name[64];

	snprintf(name, sizeof(name), fmt, n);
	snprintf(buf, len, "%s/%s", rundir(), name);
}

/* Tell the starter (REALXS_READY_FD) that the daemon is up; once only. */
static void signal_ready(void)
{
	const char *fd_text = getenv("REALXS_READY_FD");
	int fd;

	if (!fd_text || !*fd_text)
		return;
	fd = atoi(fd_text);
	unsetenv("REALXS_READY_FD");
	if (write(fd, "ready\n", 6) != 6)
		debug("ready fd %d: %s\n", fd, strerror(errno));
	close(fd);
}

/* ------------------------------------------------------------- open() */

static int next_open(const char *path, int flags, mode_t mode)
{
	static int (*fn)(const char *, int, ...);

	if (!fn)
		fn = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
	return fn(path, flags, mode);
}

/* RUNDIR/ring-<domid>, one page long (an anonymous page if RUNDIR fails). */
static int ring_fd(unsigned int domid)
{
	char path[4096];
	int fd;

	rundir_path(path, sizeof(path), "ring-%u", domid);
	fd = next_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		fd = memfd_create("realxs-ring", MFD_CLOEXEC);
	if (fd >= 0 && ftruncate(fd, PAGE_SIZE_) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* /proc/xen/xsd_port holds dom0's remote port: "1". */
static int xsd_port_fd(void)
{
	int fd = memfd_create("realxs-xsd_port", MFD_CLOEXEC);

	if (fd >= 0 && (write(fd, "1\n", 2) != 2 || lseek(fd, 0, SEEK_SET) != 0)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Returns 1 and sets *fd when path is one of the /proc/xen files. */
static int open_special(const char *path, int *fd)
{
	if (!path)
		return 0;
	if (!strcmp(path, "/proc/xen/xsd_port")) {
		*fd = xsd_port_fd();
	} else if (!strcmp(path, "/proc/xen/xsd_kva")) {
		/* cxenstored's dom0_init: the last step before its main loop */
		*fd = ring_fd(0);
		signal_ready();
	} else {
		return 0;
	}
	debug("open(%s) -> %d\n", path, *fd);
	return 1;
}

static mode_t open_mode(int flags, va_list ap)
{
	return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;
	int fd;

	va_start(ap, flags);
	mode = open_mode(flags, ap);
	va_end(ap);
	if (open_special(path, &fd))
		return fd;
	return next_open(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;
	int fd;

	va_start(ap, flags);
	mode = open_mode(flags, ap);
	va_end(ap);
	if (open_special(path, &fd))
		return fd;
	return next_open(path, flags | O_LARGEFILE, mode);
}

/* ------------------------------------------------------------ domains */

/* port_domid[port] = domid + 1 of the domain bound to it; 0 = free */
static unsigned int port_domid[NR_PORTS];
static unsigned int next_port = VIRQ_PORT + 1;

/* Is domid in a list like "1-10,42" (or "all")? */
static int listed(const char *spec, unsigned int domid)
{
	const char *p = spec;

	if (!spec || !*spec)
		return 0;
	if (!strcmp(spec, "all"))
		return domid < DOMID_FIRST_RESERVED;
	while (*p) {
		char *end;
		unsigned long lo = strtoul(p, &end, 10), hi = lo;

		if (end == p)
			break;
		p = end;
		if (*p == '-') {
			hi = strtoul(p + 1, &end, 10);
			p = end;
		}
		if (domid >= lo && domid <= hi)
			return 1;
		while (*p == ',' || *p == ' ')
			p++;
	}
	return 0;
}

static int introduced(unsigned int domid)
{
	for (unsigned int port = 0; port < NR_PORTS; port++)
		if (port_domid[port] == domid + 1)
			return 1;
	return 0;
}

static enum state domain_state(unsigned int domid)
{
	static const char *const names[] = {
		[GONE] = "gone", [RUNNING] = "running", [DYING] = "dying",
		[SHUTDOWN] = "shutdown", [CRASHED] = "crashed",
	};
	enum state state = GONE;
	char path[4096], line[256];
	FILE *f;

	if (domid == 0 || introduced(domid) || listed(getenv("REALXS_DOMAINS"), domid))
		state = RUNNING;
	snprintf(path, sizeof(path), "%s/domains", rundir());
	f = fopen(path, "re");
	if (!f)
		return state;
	while (fgets(line, sizeof(line), f)) {
		unsigned int d;
		char word[32];

		if (sscanf(line, "%u %31s", &d, word) != 2 || d != domid)
			continue;
		for (unsigned int s = GONE; s <= CRASHED; s++)
			if (!strcmp(word, names[s]))
				state = s;
	}
	fclose(f);
	return state;
}

/* The leading fields of xc_dominfo_t (tools/include/xenctrl.h, 4.17). */
struct dominfo_head {
	uint32_t domid;
	uint32_t ssidref;
	unsigned int dying:1, crashed:1, shutdown:1, paused:1, blocked:1,
		     running:1, hvm:1, debugged:1, xenstore:1, hap:1;
	unsigned int shutdown_reason;
};

void *xc_interface_open(void *logger, void *dombuild_logger, unsigned flags)
{
	static int handle;

	return &handle;
}

int xc_interface_close(void *xch)
{
	return 0;
}

/* The first existing domain at or after first_domid (xenstored asks for
 * one and checks that the domid is the one it asked about). */
int xc_domain_getinfo(void *xch, uint32_t first_domid, unsigned int max_doms,
		      void *info)
{
	struct dominfo_head *di = info;
	enum state state = GONE;
	unsigned int d;

	if (max_doms < 1)
		return 0;
	for (d = first_domid; d < DOMID_FIRST_RESERVED; d++) {
		state = domain_state(d);
		if (state != GONE)
			break;
		if (d - first_domid > SCAN_LIMIT)
			return 0;
	}
	if (d >= DOMID_FIRST_RESERVED)
		return 0;
	memset(di, 0, sizeof(*di));
	di->domid = d;
	di->dying = state == DYING;
	di->shutdown = state == SHUTDOWN;
	di->crashed = state == CRASHED;
	di->running = state == RUNNING;
	di->xenstore = d == 0;
	debug("xc_domain_getinfo(%u) -> dom%u state %d\n", first_domid, d, state);
	return 1;
}

/* ------------------------------------------------------------- evtchn */

struct xenevtchn_handle {
	int fd;
};

/* RUNDIR/evtchn, opened read-write so that it never reads EOF. */
static int evtchn_fifo(void)
{
	char path[4096];
	int fds[2];

	snprintf(path, sizeof(path), "%s/evtchn", rundir());
	unlink(path);
	if (mkfifo(path, 0600) == 0) {
		int fd = next_open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
		if (fd >= 0)
			return fd;
	}
	/* no RUNDIR: a pipe nobody writes to (no events, but a daemon) */
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
		return -1;
	return fds[0];
}

static struct xenevtchn_handle *evtchn_handle(int fd)
{
	struct xenevtchn_handle *h;

	if (fd < 0)
		return NULL;
	h = calloc(1, sizeof(*h));
	if (h)
		h->fd = fd;
	return h;
}

void *xenevtchn_open(void *logger, unsigned int flags)
{
	return evtchn_handle(evtchn_fifo());
}

void *xenevtchn_fdopen(void *logger, int fd, unsigned int flags)
{
	return evtchn_handle(fd);
}

int xenevtchn_close(struct xenevtchn_handle *h)
{
	if (h) {
		close(h->fd);
		free(h);
	}
	return 0;
}

int xenevtchn_fd(struct xenevtchn_handle *h)
{
	return h->fd;
}

int xenevtchn_notify(struct xenevtchn_handle *h, uint32_t port)
{
	return 0;
}

int xenevtchn_bind_virq(struct xenevtchn_handle *h, unsigned int virq)
{
	return VIRQ_PORT;
}

int xenevtchn_bind_interdomain(struct xenevtchn_handle *h, uint32_t domid,
			       uint32_t remote_port)
{
	for (unsigned int tries = 0; tries < NR_PORTS; tries++) {
		unsigned int port = next_port;
		char path[4096];
		FILE *f;

		next_port = next_port + 1 < NR_PORTS ? next_port + 1 : VIRQ_PORT + 1;
		if (port_domid[port])
			continue;
		port_domid[port] = domid + 1;
		rundir_path(path, sizeof(path), "port-%u", domid);
		f = fopen(path, "we");
		if (f) {
			fprintf(f, "%u\n", port);
			fclose(f);
		}
		debug("bind_interdomain(dom%u, %u) -> %u\n", domid, remote_port, port);
		if (domid == 0)
			signal_ready(); /* oxenstored; a no-op after cxenstored's */
		return (int)port;
	}
	errno = ENOSPC;
	return -1;
}

int xenevtchn_unbind(struct xenevtchn_handle *h, uint32_t port)
{
	if (port < NR_PORTS)
		port_domid[port] = 0;
	return 0;
}

/* The port of one event from the FIFO; a spurious wakeup gives a port that
 * is bound to nothing, which xenstored ignores. */
int xenevtchn_pending(struct xenevtchn_handle *h)
{
	unsigned char b[4];

	if (read(h->fd, b, sizeof(b)) == (ssize_t)sizeof(b))
		return (int)(b[0] | b[1] << 8 | b[2] << 16 | (unsigned int)b[3] << 24);
	return NR_PORTS + 1;
}

int xenevtchn_unmask(struct xenevtchn_handle *h, uint32_t port)
{
	return 0;
}

/* ------------------------------------------------------------- gnttab */

void *xengnttab_open(void *logger, unsigned int flags)
{
	static int handle;

	return &handle;
}

int xengnttab_close(void *xgt)
{
	return 0;
}

int xengnttab_set_max_grants(void *xgt, uint32_t count)
{
	return 0;
}

static void *map_ring(unsigned int domid, size_t size)
{
	int fd = ring_fd(domid);
	void *addr;

	if (fd < 0)
		return NULL;
	addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	debug("map ring of dom%u -> %p\n", domid, addr);
	return addr == MAP_FAILED ? NULL : addr;
}

void *xengnttab_map_grant_ref(void *xgt, uint32_t domid, uint32_t ref, int prot)
{
	return map_ring(domid, PAGE_SIZE_);
}

int xengnttab_unmap(void *xgt, void *start, uint32_t count)
{
	return munmap(start, (size_t)count * PAGE_SIZE_);
}

/* ----------------------------------------------- what oxenstored adds */

/* oxenstored raises RLIMIT_NOFILE to nr_open; clamp to the hard limit
 * when that is not allowed. */
int setrlimit(__rlimit_resource_t resource, const struct rlimit *limit)
{
	struct rlimit want = *limit, hard;

	if (prlimit(0, resource, &want, NULL) == 0)
		return 0;
	if (errno != EPERM || getrlimit(resource, &hard) != 0)
		return -1;
	if (want.rlim_max > hard.rlim_max)
		want.rlim_max = hard.rlim_max;
	if (want.rlim_cur > want.rlim_max)
		want.rlim_cur = want.rlim_max;
	return prlimit(0, resource, &want, NULL);
}

/* struct xen_domctl_getdomaininfo (Xen 4.17, x86): 112 bytes */
struct domctl_getdomaininfo {
	uint16_t domain;
	uint16_t pad1;
	uint32_t flags;
	uint64_t tot_pages, max_pages, outstanding_pages, shr_pages,
		 paged_pages, shared_info_frame, cpu_time;
	uint32_t nr_online_vcpus, max_vcpu_id, ssidref;
	uint8_t handle[16];
	uint32_t cpupool;
	uint8_t gpaddr_bits;
	uint8_t pad2[7];
	uint32_t emulation_flags, misc_flags;
};

#define XEN_DOMINF_dying (1u << 0)
#define XEN_DOMINF_shutdown (1u << 2)
#define XEN_DOMINF_running (1u << 5)
#define XEN_DOMINF_shutdownshift 16
#define SHUTDOWN_crash 3

int xc_domain_getinfolist(void *xch, uint32_t first_domid,
			  unsigned int max_domains, void *infos)
{
	struct domctl_getdomaininfo *info = infos;
	unsigned int n = 0;

	for (unsigned int d = first_domid; d < DOMID_FIRST_RESERVED && n < max_domains; d++) {
		enum state state = domain_state(d);

		if (state == GONE) {
			if (d - first_domid > SCAN_LIMIT)
				break;
			continue;
		}
		memset(&info[n], 0, sizeof(info[n]));
		info[n].domain = (uint16_t)d;
		info[n].flags = (state == DYING ? XEN_DOMINF_dying : 0) |
			(state == SHUTDOWN || state == CRASHED ? XEN_DOMINF_shutdown : 0) |
			(state == RUNNING ? XEN_DOMINF_running : 0) |
			(state == CRASHED ? SHUTDOWN_crash << XEN_DOMINF_shutdownshift : 0);
		info[n].max_pages = info[n].tot_pages = 1;
		n++;
	}
	return (int)n;
}

struct xc_error_ {
	int code;
	char message[1024];
};

const void *xc_get_last_error(void *xch)
{
	static struct xc_error_ none;

	return &none;
}

void *xc_map_foreign_range(void *xch, uint32_t domid, int size, int prot,
			   unsigned long mfn)
{
	return map_ring(domid, (size_t)size);
}
