"""Test certificates made at test time: the helper lives in the package so `streamhouse bench tls`
can use it too (the package must not import tests/)."""

from streamhouse.devservices.tls_certs import Certs, make_certs

__all__ = ["Certs", "make_certs"]
