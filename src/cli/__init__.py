"""The command line's words: one-line messages and exit codes for errors, and netsweep's --help."""
