"""The gRPC layer: servicer, proto <-> Python conversion, the error table, auth and the server.

It validates, converts, stores and enqueues; it never imports torch (workers do the work).
The code generated from protos/ lives in the client package: ``vqpress.v1``.
"""
