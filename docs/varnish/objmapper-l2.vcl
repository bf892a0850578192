# objmapper as Varnish's persistent, shared second-level cache, with
# vmod_objmapper (the package libvmod-objmapper): a miss in Varnish is
# looked up in objmapperd; a miss there goes to the origin, and what
# Varnish caches is written through into objmapperd. README.md,
# "objmapper as Varnish's second-level cache"; vmod_objmapper(3);
# tests/varnish/c00011.vtc runs Varnish with this file (only the origin's
# address and the socket's path changed).
vcl 4.1;

import objmapper;

# The origin: where objects come from when neither Varnish nor objmapperd
# has them.
backend origin {
	.host = "192.0.2.10";
	.port = "80";
}

acl purgers {
	"localhost";
}

sub vcl_init {
	# The Varnish worker user must be allowed on the socket:
	# adduser vcache objmapper.
	new l2 = objmapper.cache(origin, socket = "/run/objmapper/objmapper.sock");
}

sub vcl_recv {
	if (req.method == "PURGE") {
		if (client.ip !~ purgers) {
			return (synth(405));
		}
		return (purge);
	}
	# Every fetch asks objmapperd first; passes go straight to the origin.
	set req.backend_hint = l2.backend();
}

sub vcl_purge {
	# Out of objmapperd too, not only out of Varnish.
	l2.purge();
}
