-- ACLs (issue 15, engine/auth/acl.py): allow rules per principal. Nothing is allowed that no
-- row allows once auth is on (admins bypass); rows are only ever allow rules, as Kafka's are
-- by default. `pattern` is Kafka's pattern type: 'literal' matches the name exactly ('*' is
-- every name), 'prefixed' every name that starts with it. No foreign key to auth_principals:
-- as in Kafka, a rule may be written before the principal's first key exists.
CREATE TABLE auth_acls (
    org TEXT NOT NULL,
    principal TEXT NOT NULL,
    resource_type TEXT NOT NULL CHECK (resource_type IN ('topic', 'group', 'job', 'subject')),
    pattern TEXT NOT NULL CHECK (pattern IN ('literal', 'prefixed')),
    resource_name TEXT NOT NULL,
    operation TEXT NOT NULL CHECK (operation IN ('read', 'write', 'create', 'delete', 'alter', 'describe')),
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (org, principal, resource_type, pattern, resource_name, operation)
);
