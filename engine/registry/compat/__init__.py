"""Schema compatibility checkers for JSON Schema and Protobuf, pure and IO-free.

Each module's `check(new, old)` answers whether a reader using `new` can read data written with
`old` (BACKWARD); the registry derives FORWARD as check(old, new), FULL as both, and the
_TRANSITIVE forms by looping over versions. `parse(text)` raises InvalidSchemaError.
"""

from streamhouse.registry.compat.errors import InvalidSchemaError

__all__ = ["InvalidSchemaError"]
