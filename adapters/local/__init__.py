"""Local connectors: the simulated bank (in-process, answers with status reports) and the directory drop."""
