"""gRPC API of the agent: `streamhouse.proto` (DESIGN §1, §6).

`streamhouse.proto` (package `streamhouse.v1`) is the source; `streamhouse_pb2.py`, `.pyi` and
`streamhouse_pb2_grpc.py` are generated from it and committed. Regenerate them with
`python tools/gen_proto.py`; `tests/engine/server/test_proto.py` fails when they are stale.
Import the generated modules explicitly (`from streamhouse.proto import streamhouse_pb2`),
so importing this package stays free of protobuf.
"""
