/*
 * backend.c - picks the backend for a source string (backend.h).
 *
 * Owns: the mapping from a source's prefix to its implementation.  Does not
 * own: parsing the rest of the source, which each backend does itself.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "backend/backend.h"

int hb_open(const char *source, const struct hb_opts *opts, struct hb **bp,
	    char *err, size_t err_len)
{
	static const struct hb_opts defaults = {0};

	*bp = NULL;
	if (err_len)
		err[0] = '\0';
	if (!opts)
		opts = &defaults;
	if (!strncmp(source, "nfs://", 6))
		return hb_nfs_open(source, opts, bp, err, err_len);
	if (!strncmp(source, "dir:", 4))
		return hb_dir_open(source, opts, bp, err, err_len);
	snprintf(err, err_len,
		 "unknown source '%s' (expected nfs://host[:port]/export[/path]"
		 "[?version=3|4] or dir:/path)", source);
	return -EINVAL;
}
