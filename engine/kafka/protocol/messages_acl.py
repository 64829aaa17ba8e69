"""Schemas of Kafka's ACL admin APIs (KIP-140; what kafka-acls.sh and every Admin client's
createAcls / describeAcls / deleteAcls send): DescribeAcls (29), CreateAcls (30), DeleteAcls
(31), versions 0-3, flexible from v2, as apache/kafka's clients/src/main/resources/common/
message/{Describe,Create,Delete}Acls{Request,Response}.json. v1 adds the resource pattern
type (LITERAL = 3 before it); v3 only adds the USER resource type, which we refuse per ACL.
The mapping onto our rules is engine/kafka/handlers_acl.py."""

from __future__ import annotations

from streamhouse.kafka.protocol.schema import api

DESCRIBE_ACLS = api(
    29, "DescribeAcls", "0-3", 2,
    request="""
    resource_type_filter int8
    resource_name_filter string null:0+
    pattern_type_filter int8 v1+ =3
    principal_filter string null:0+
    host_filter string null:0+
    operation int8
    permission_type int8
    """,
    response="""
    throttle_time_ms int32
    error_code int16
    error_message string null:0+ =null
    resources []
      resource_type int8
      resource_name string
      pattern_type int8 v1+ =3
      acls []
        principal string
        host string
        operation int8
        permission_type int8
    """,
)  # fmt: skip

CREATE_ACLS = api(
    30, "CreateAcls", "0-3", 2,
    request="""
    creations []
      resource_type int8
      resource_name string
      resource_pattern_type int8 v1+ =3
      principal string
      host string
      operation int8
      permission_type int8
    """,
    response="""
    throttle_time_ms int32
    results []
      error_code int16
      error_message string null:0+ =null
    """,
)  # fmt: skip

DELETE_ACLS = api(
    31, "DeleteAcls", "0-3", 2,
    request="""
    filters []
      resource_type_filter int8
      resource_name_filter string null:0+
      pattern_type_filter int8 v1+ =3
      principal_filter string null:0+
      host_filter string null:0+
      operation int8
      permission_type int8
    """,
    response="""
    throttle_time_ms int32
    filter_results []
      error_code int16
      error_message string null:0+ =null
      matching_acls []
        error_code int16
        error_message string null:0+ =null
        resource_type int8
        resource_name string
        pattern_type int8 v1+ =3
        principal string
        host string
        operation int8
        permission_type int8
    """,
)  # fmt: skip

ACL_APIS = (DESCRIBE_ACLS, CREATE_ACLS, DELETE_ACLS)
