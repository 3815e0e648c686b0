/* base/ident.c -- see ident.h. */
#define _POSIX_C_SOURCE 200809L
#include "ident.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Field 22 of /proc/self/stat (starttime); 0 when it cannot be read. The second field,
 * the command, is in parentheses and may hold blanks: fields are counted after its ')'. */
static unsigned long long start_ticks(void)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long long t = 0;
    for (int field = 2; p && *p && field < 22; p++)
        if (*p == ' ')
            field++;
    if (p && sscanf(p, "%llu", &t) != 1)
        t = 0;
    return t;
}

void pst_process_tag(char *buf, size_t n, const char *role, int rank, const char *suffix)
{
    char host[256] = "";
    (void)gethostname(host, sizeof host - 1);
    uint64_t h = 0xcbf29ce484222325ULL ^ start_ticks(); /* FNV-1a over the host name */
    for (const char *c = host; *c; c++)
        h = (h ^ (unsigned char)*c) * 0x100000001b3ULL;
    snprintf(buf, n, "%s-%d-%d-%016llx%s%s", role, rank, (int)getpid(), (unsigned long long)h,
             suffix ? "-" : "", suffix ? suffix : "");
}
