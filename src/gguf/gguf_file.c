/* gguf_file.c - the native platform layer of the GGUF reader: opens a file by
 * mmap (read-only) and, for the first file of a llama.cpp split set, the
 * sibling parts PREFIX-0000k-of-0000N.gguf. POSIX. */
#include "gguf/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct mapping {
    void *addr;
    size_t size;
} mapping;

static void unmap(void *ctx) {
    mapping *m = ctx;
    if (m->addr) munmap(m->addr, m->size);
    free(m);
}

/* Maps and parses one file; errors are prefixed with its path. */
static sl_gguf *open_one(const char *path, sl_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        sl_err(err, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        sl_err(err, "cannot open %s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        sl_err(err, "cannot open %s: %s", path, S_ISDIR(st.st_mode) ? strerror(EISDIR) :
                                                 "not a regular file");
        close(fd);
        return NULL;
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        sl_err(err, "cannot open %s: file too large to map", path);
        close(fd);
        return NULL;
    }
    mapping *m = calloc(1, sizeof *m);
    if (!m) {
        sl_err(err, "out of memory");
        close(fd);
        return NULL;
    }
    m->size = (size_t)st.st_size;
    if (m->size > 0) { /* mmap refuses empty files; the parser reports them */
        void *addr = mmap(NULL, m->size, PROT_READ, MAP_SHARED, fd, 0);
        if (addr == MAP_FAILED) {
            sl_err(err, "cannot map %s: %s", path, strerror(errno));
            close(fd);
            free(m);
            return NULL;
        }
        m->addr = addr;
    }
    close(fd);

    sl_error parse_err;
    sl_gguf *g = sl_gguf_open_memory(m->addr ? m->addr : "", m->size, 0, &parse_err);
    if (!g) {
        sl_err(err, "%s: %s", path, parse_err.msg);
        unmap(m);
        return NULL;
    }
    sl_gguf_set_release(g, unmap, m);
    return g;
}

/* Checks that path ends in "-00001-of-NNNNN.gguf" and returns the length of the prefix. */
static int split_prefix_len(const char *path, uint32_t count, size_t *prefix_len, sl_error *err) {
    char suffix[64];
    snprintf(suffix, sizeof suffix, "-%05d-of-%05" PRIu32 ".gguf", 1, count);
    size_t n = strlen(path), s = strlen(suffix);
    if (n < s || strcmp(path + n - s, suffix) != 0)
        return sl_err(err, "%s is the first of %" PRIu32 " split parts but its name does not end in "
                      "'%s'", path, count, suffix);
    *prefix_len = n - s;
    return 0;
}

sl_gguf *sl_gguf_open_file(const char *path, sl_error *err) {
    sl_gguf *g = open_one(path, err);
    if (!g) return NULL;
    sl_gguf_split info;
    sl_error split_err;
    int rc = sl_gguf_split_info(g, &info, &split_err);
    if (rc == 0) return g;
    if (rc < 0) {
        sl_err(err, "%s: %s", path, split_err.msg);
        sl_gguf_close(g);
        return NULL;
    }
    if (info.no != 0) {
        sl_err(err, "%s is part %" PRIu32 " of %" PRIu32 " of a split; open the first part",
               path, info.no + 1, info.count);
        sl_gguf_close(g);
        return NULL;
    }
    size_t prefix_len = 0;
    if (split_prefix_len(path, info.count, &prefix_len, err)) {
        sl_gguf_close(g);
        return NULL;
    }
    size_t part_cap = prefix_len + 64;
    char *part_path = malloc(part_cap);
    if (!part_path) {
        sl_err(err, "out of memory");
        sl_gguf_close(g);
        return NULL;
    }
    for (uint32_t k = 1; k < info.count; k++) {
        snprintf(part_path, part_cap, "%.*s-%05" PRIu32 "-of-%05" PRIu32 ".gguf", (int)prefix_len,
                 path, k + 1, info.count);
        sl_gguf *part = open_one(part_path, err);
        if (!part) goto fail;
        if (sl_gguf_add_split_part(g, part, &split_err)) {
            sl_err(err, "%s: %s", part_path, split_err.msg);
            goto fail;
        }
    }
    if (sl_gguf_finish_split(g, &split_err)) {
        sl_err(err, "%s: %s", path, split_err.msg);
        goto fail;
    }
    free(part_path);
    return g;
fail:
    free(part_path);
    sl_gguf_close(g);
    return NULL;
}
