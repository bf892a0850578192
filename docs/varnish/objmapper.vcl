# Varnish in front of objmapper: the backend is objmapperd's HTTP listener
# on a Unix socket (docs/varnish/objmapper-http.conf). Varnish caches what
# it serves; objmapper keeps every object, so a restarted Varnish (empty
# cache) fetches them again from objmapper. README.md, "Using objmapper
# behind Varnish"; tests/check-varnish runs Varnish with this file (only
# the socket's path changed).

# A backend on a Unix socket (.path) needs VCL 4.1.
vcl 4.1;

backend objmapper {
	.path = "/run/objmapper/http.sock";
}

sub vcl_recv {
	# A read-only front: objects are written with the objmapper command or
	# libobjmapper on the daemon's own socket (the listener refuses writes
	# too: allow_read only).
	if (req.method != "GET" && req.method != "HEAD") {
		return (synth(405));
	}
	# Everything else is Varnish's builtin VCL: GET and HEAD are looked up
	# in the cache (HEAD misses are fetched with GET), Range is served from
	# the cached object, requests with a Cookie or Authorization header go
	# to objmapper uncached (pass).
}
