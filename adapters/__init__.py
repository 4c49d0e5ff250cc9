"""Protocol-specific adapters (HTTP, SFTP, session, local); they reach the core only through the pipeline."""
