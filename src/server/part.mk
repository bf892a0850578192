# objmapperd: the daemon.
