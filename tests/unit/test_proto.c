/*
 * The daemon's one errno table (src/proto/status.c) against the three
 * mappings it replaced (the binary protocol's errno to status, HTTP's
 * errno to HTTP status, and HTTP status to the status counted), for every
 * errno and every HTTP status.
 */
#include <errno.h>

#include "om_test.h"
#include "proto/om_proto.h"

/* conn.c's status_of, as it was. */
static uint16_t
old_status_of(int rc)
{
	switch (rc) {
	case -ENOENT: return OM_STATUS_NOT_FOUND;
	case -EINVAL: return OM_STATUS_BAD_REQUEST;
	case -ENAMETOOLONG: return OM_STATUS_URI_INVALID;
	case -EMSGSIZE: return OM_STATUS_META_TOO_LARGE;
	case -EFBIG: return OM_STATUS_TOO_LARGE;
	case -ENOSPC: case -EDQUOT: return OM_STATUS_NO_SPACE;
	case -EMFILE: case -ENFILE: case -ENOMEM: case -EAGAIN: return OM_STATUS_BUSY;
	case -ENODATA: return OM_STATUS_SHORT_BODY;
	default: return OM_STATUS_INTERNAL;
	}
}

/* http.c's status_of_store, as it was: its callers answered ENOENT
 * themselves (404 for a DELETE; a PUT's ENOENT is the server's). */
static int
old_status_of_store(int rc)
{
	switch (rc) {
	case -EFBIG: return 413;
	case -ENOSPC:
	case -EDQUOT: return 507;
	case -ENAMETOOLONG: return 414;
	case -EMSGSIZE:
	case -EINVAL: return 400;
	case -ENOMEM:
	case -EMFILE:
	case -ENFILE:
	case -EAGAIN: return 503;
	default: return 500;
	}
}

/* http.c's status_om, as it was, for the statuses the daemon sends. */
static unsigned
old_status_om(int status)
{
	switch (status) {
	case 200: case 201: case 204: case 206: case 304: return OM_STATUS_OK;
	case 403: return OM_STATUS_DENIED;
	case 404: return OM_STATUS_NOT_FOUND;
	case 413: return OM_STATUS_TOO_LARGE;
	case 414: return OM_STATUS_URI_INVALID;
	case 503: return OM_STATUS_BUSY;
	case 507: return OM_STATUS_NO_SPACE;
	default: return status >= 500 ? OM_STATUS_INTERNAL : OM_STATUS_BAD_REQUEST;
	}
}

static void
test_errno_to_status(void **state)
{
	(void)state;
	for (int e = 0; e < 4096; e++)
		assert_int_equal(om_proto_status_of(-e), old_status_of(-e));
}

static void
test_errno_to_http(void **state)
{
	(void)state;
	for (int e = 0; e < 4096; e++)
		if (e != ENOENT && e != ENODATA)
			assert_int_equal(om_proto_http_status_of(-e), old_status_of_store(-e));
	assert_int_equal(om_proto_http_status_of(-ENOENT), 404);
	/* Only a PUT by descriptor says ENODATA, which HTTP has not. */
	assert_int_equal(om_proto_http_status_of(-ENODATA), 500);
}

static void
test_http_to_status(void **state)
{
	static const int sent[] = { 200, 201, 204, 206, 304, 400, 403, 404, 405, 408, 411, 413, 414, 416,
		431, 500, 501, 503, 505, 507 };

	(void)state;
	for (unsigned i = 0; i < sizeof(sent) / sizeof(sent[0]); i++)
		assert_int_equal(om_proto_status_of_http(sent[i]), old_status_om(sent[i]));
	for (int h = 400; h < 600; h++)
		assert_int_equal(om_proto_status_of_http(h), old_status_om(h));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_errno_to_status),
		cmocka_unit_test(test_errno_to_http),
		cmocka_unit_test(test_http_to_status),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
