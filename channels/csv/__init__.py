"""CSV import: reading (read), header mapping (mapping), rows to events (rows), the run
(runner), the command."""
