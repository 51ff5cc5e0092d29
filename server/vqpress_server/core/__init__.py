"""Pure algorithms: torch and numpy only. Never imports grpc, protobuf, sqlite3 or the artifact store."""
