"""Kafka request/response framing and message schemas, IO-free.

`schema` holds the field-spec language, `messages_*` the hand-written schema of each API,
`codec` the one encoder/decoder that walks a schema, `headers` the request/response
headers and `api` the registry a server dispatches on.
"""
