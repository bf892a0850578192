# The objmapper command-line client.
