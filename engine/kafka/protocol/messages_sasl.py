"""Schemas of the SASL APIs (KIP-43, KIP-152): SaslHandshake picks a mechanism, SaslAuthenticate
carries its tokens. SaslHandshake is never flexible (v1 only says "SaslAuthenticate follows";
after v0 the tokens travel as bare size-prefixed frames, engine/kafka/sasl/gate.py). Served
only when the listener has authentication on."""

from __future__ import annotations

from streamhouse.kafka.protocol.schema import MAX_VERSION, api

SASL_HANDSHAKE = api(
    17, "SaslHandshake", "0-1", MAX_VERSION + 1,
    request="""
    mechanism string
    """,
    response="""
    error_code int16
    mechanisms []string
    """,
)  # fmt: skip

SASL_AUTHENTICATE = api(
    36, "SaslAuthenticate", "0-2", 2,
    request="""
    auth_bytes bytes
    """,
    response="""
    error_code int16
    error_message string null:0+ =null
    auth_bytes bytes
    session_lifetime_ms int64 v1+
    """,
)  # fmt: skip

SASL_APIS = (SASL_HANDSHAKE, SASL_AUTHENTICATE)
