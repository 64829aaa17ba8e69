"""gRPC wire code shared by the server and the remote SDK: protobuf ↔ API values (convert.py) and
StreamHouseError ↔ gRPC status (status.py).
"""
