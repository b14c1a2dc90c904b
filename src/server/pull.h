/* pull.h - `streamllm pull`: downloading a model from the Hugging Face hub
 * (hf://OWNER/REPO/PATH.gguf) or any http(s) URL into a local folder, with
 * libcurl: resumable (FILE.part + Range), a progress bar on a terminal, the
 * SHA-256 the hub publishes for LFS files checked (its X-Linked-Etag), and an
 * atomic rename when done. A download that fails the check is deleted, .part
 * included, so the next pull starts clean. */
#ifndef SL_PULL_H
#define SL_PULL_H

#include <stdio.h>

#include "util/common.h"

typedef struct sl_pull_opts {
    const char *out_dir;      /* NULL: sl_pull_default_dir() */
    bool progress;            /* progress bar on stderr */
    FILE *log;                /* one line per file fetched or found (NULL: quiet) */
    long stall_timeout_s;     /* give up when under 1 byte/s for this long; 0: 60 */
} sl_pull_opts;

/* True for hf://, http:// and https:// sources. */
bool sl_pull_is_remote(const char *src);

/* The URL to fetch and the local file name for src. hf://OWNER/REPO/PATH maps
 * to $STREAMLLM_HF_ENDPOINT/OWNER/REPO/resolve/main/PATH (endpoint default
 * https://huggingface.co); for an http(s) URL the name is its last path
 * segment. Names must be plain ([A-Za-z0-9._+-], not starting with '.'). */
int sl_pull_resolve(const char *src, char *url, size_t url_size, char *name, size_t name_size, sl_error *err);

/* $XDG_CACHE_HOME/stream-llm, else ~/.cache/stream-llm (malloc'd). */
char *sl_pull_default_dir(sl_error *err);

/* Downloads src into the folder (created if missing) unless the file is
 * already there; for the first file of a llama.cpp split
 * (NAME-00001-of-0000N.gguf) every part is fetched. Returns the local path of
 * the (first) file, malloc'd, or NULL with err set. An interrupted download
 * leaves FILE.part behind; the next call resumes it. */
char *sl_pull(const char *src, const sl_pull_opts *o, sl_error *err);

#endif
