/* runtime/amx.c — the AMX tile state, which Linux hands out only on request
 * (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, Linux 5.16 and later): a
 * process that runs tile instructions without it dies of SIGILL. The permission is
 * the process's, for every thread; asked once. */
#define _GNU_SOURCE   /* syscall() */
#include "runtime/runtime.h"

#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>

int bprt_amx_request(void) {
  static _Atomic int state;   /* 0: not asked, 1: granted, -1: refused */
  if (state == 0) {
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    state = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 ? 1 : -1;
  }
  return state == 1;
}
#else
int bprt_amx_request(void) { return 0; }
#endif
