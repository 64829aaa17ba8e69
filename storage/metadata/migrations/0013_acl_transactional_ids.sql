-- ACLs on Kafka transactional ids (issue 18, transactions under SASL): a principal needs write on
-- a transactional id to use it (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn and
-- the transaction's Produce), as in Kafka's TransactionalId resource. The CHECK of 0009 lists the
-- resource types, and neither backend alters a CHECK in place the same way, so the table is
-- rebuilt with the same rows.
CREATE TABLE auth_acls_0013 (
    org TEXT NOT NULL,
    principal TEXT NOT NULL,
    resource_type TEXT NOT NULL CHECK (resource_type IN ('topic', 'group', 'job', 'subject', 'transactional_id')),
    pattern TEXT NOT NULL CHECK (pattern IN ('literal', 'prefixed')),
    resource_name TEXT NOT NULL,
    operation TEXT NOT NULL CHECK (operation IN ('read', 'write', 'create', 'delete', 'alter', 'describe')),
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (org, principal, resource_type, pattern, resource_name, operation)
);
INSERT INTO auth_acls_0013 (org, principal, resource_type, pattern, resource_name, operation, created_at_ms)
    SELECT org, principal, resource_type, pattern, resource_name, operation, created_at_ms FROM auth_acls;
DROP TABLE auth_acls;
ALTER TABLE auth_acls_0013 RENAME TO auth_acls;
