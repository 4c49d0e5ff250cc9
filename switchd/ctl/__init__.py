"""switchctl: the operators' command line over the journal and the running daemon."""
