/*
 * The one table from an errno (as the store and the system return it) to
 * what the daemon answers: the objmapper status and the HTTP status; read
 * backwards, the objmapper status an HTTP response counts as in the
 * statistics. The words of a status are om_proto_status_text's; a
 * failure's message is the store's sentence (om_store_why) or the errno's
 * text. Worker processes.
 */
#include <errno.h>

#include "core/om_core.h"
#include "proto/om_proto.h"

static const struct {
	int err;          /* positive; 0: a row only for the HTTP status */
	uint16_t status;  /* OM_STATUS_* */
	uint16_t http;
} table[] = {
	{ ENOENT,       OM_STATUS_NOT_FOUND,      404 },
	{ EINVAL,       OM_STATUS_BAD_REQUEST,    400 },
	{ ENAMETOOLONG, OM_STATUS_URI_INVALID,    414 },
	{ EMSGSIZE,     OM_STATUS_META_TOO_LARGE, 400 },
	{ EFBIG,        OM_STATUS_TOO_LARGE,      413 },
	{ ENOSPC,       OM_STATUS_NO_SPACE,       507 },
	{ EDQUOT,       OM_STATUS_NO_SPACE,       507 },
	{ EMFILE,       OM_STATUS_BUSY,           503 },
	{ ENFILE,       OM_STATUS_BUSY,           503 },
	{ ENOMEM,       OM_STATUS_BUSY,           503 },
	{ EAGAIN,       OM_STATUS_BUSY,           503 },
	{ 0,            OM_STATUS_DENIED,         403 }, /* a listener's allow lists */
	{ 0,            OM_STATUS_INTERNAL,       500 },
	{ ENODATA,      OM_STATUS_SHORT_BODY,     500 }, /* a PUT's descriptor is short */
};

static int
row_of(int rc)
{
	for (unsigned i = 0; i < OM_ARRAY_LEN(table); i++)
		if (table[i].err != 0 && table[i].err == -rc)
			return (int)i;
	return -1;
}

uint16_t
om_proto_status_of(int rc)
{
	int i = row_of(rc);

	return i >= 0 ? table[i].status : OM_STATUS_INTERNAL;
}

int
om_proto_http_status_of(int rc)
{
	int i = row_of(rc);

	return i >= 0 ? table[i].http : 500;
}

uint16_t
om_proto_status_of_http(int http)
{
	if (http >= 200 && http < 400)
		return OM_STATUS_OK;
	for (unsigned i = 0; i < OM_ARRAY_LEN(table); i++)
		if (table[i].http == http)
			return table[i].status;
	return http >= 500 ? OM_STATUS_INTERNAL : OM_STATUS_BAD_REQUEST;
}
