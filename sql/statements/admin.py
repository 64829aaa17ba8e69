"""Admin statements (issue 15): organisations, API keys and ACL rules in SQL, so a remote SDK
client (`client.sql`, `client.auth`) or the REST SQL endpoint can administer a running agent.

Only the syntax is judged here; the agent runs them (engine/auth/sql_admin.py) and refuses
them to every principal without the admin flag. The grammar borrows what users know: Postgres
and Snowflake `GRANT … ON … TO` / `REVOKE … FROM`, Kafka's ACL operations and its LITERAL /
PREFIXED pattern types.

    CREATE ORG [IF NOT EXISTS] acme                 SHOW ORGS
    CREATE API KEY FOR [PRINCIPAL] alice IN ORG acme [ADMIN] [EXPIRES IN '30d'] [COMMENT 'ci']
    SHOW API KEYS [IN ORG acme]                     REVOKE API KEY 'shk_…'
    GRANT READ, DESCRIBE ON TOPIC [PREFIXED] 'orders' TO [PRINCIPAL] alice IN ORG acme
    REVOKE READ ON TOPIC 'orders' FROM alice IN ORG acme
    SHOW ACLS [IN ORG acme] [FOR [PRINCIPAL] alice]

A new key's token is in the result of CREATE API KEY and nowhere else; a token pasted into
REVOKE API KEY is cut to its key id before anything (an error included) can show it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from streamhouse.sql.errors import SqlError, position_at

OPERATIONS = ("read", "write", "create", "delete", "alter", "describe")  # storage/metadata/acl_sql.py
RESOURCE_TYPES = ("topic", "group", "job", "subject", "transactional_id")
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)\s*$", re.IGNORECASE)
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<quoted>"(?:[^"]|"")*"|`[^`]*`)
      | (?P<word>[A-Za-z0-9_][A-Za-z0-9._@-]*)
      | (?P<symbol>[,;*])
      | (?P<other>\S)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class CreateOrg:
    name: str
    if_not_exists: bool = False


@dataclass(frozen=True)
class ShowOrgs:
    pass


@dataclass(frozen=True)
class CreateApiKey:
    org: str
    principal: str
    admin: bool = False
    expires_in_ms: int | None = None
    description: str = ""


@dataclass(frozen=True)
class ShowApiKeys:
    org: str | None = None


@dataclass(frozen=True)
class RevokeApiKey:
    key_id: str  # never the secret: a pasted token is cut at its '.'


@dataclass(frozen=True)
class ChangeAcl:
    """GRANT (grant=True) or REVOKE of `operations` on one resource pattern for one principal."""

    grant: bool
    operations: tuple[str, ...]
    resource_type: str
    pattern: str  # literal / prefixed
    resource_name: str
    org: str
    principal: str


@dataclass(frozen=True)
class ShowAcls:
    org: str | None = None
    principal: str | None = None


AdminStatement = CreateOrg | ShowOrgs | CreateApiKey | ShowApiKeys | RevokeApiKey | ChangeAcl | ShowAcls


class AdminControl(Protocol):
    """Where admin statements run (the agent: engine/auth/sql_admin.py)."""

    async def run(self, statement: AdminStatement) -> pa.Table: ...


def is_admin_statement(sql: str) -> bool:
    words = [w.upper() for w in sql.strip().rstrip(";").split(None, 3)[:3]]
    if not words:
        return False
    if words[0] in ("GRANT", "REVOKE"):
        return True
    if words[0] == "SHOW":
        return words[1:2] in (["ORGS"], ["ORGANIZATIONS"], ["ORGANISATIONS"], ["ACLS"]) or words[1:3] == ["API", "KEYS"]
    if words[0] == "CREATE":
        return words[1:2] in (["ORG"], ["ORGANIZATION"], ["ORGANISATION"]) or words[1:3] == ["API", "KEY"]
    return False


def parse_admin(sql: str) -> AdminStatement | None:
    """The admin statement `sql` is, None if it is none; SqlError (with the position) if it
    starts like one but is malformed."""
    if not is_admin_statement(sql):
        return None
    return _Parser(sql).statement()


def duration_ms(text: str) -> int:
    """'30d', '12h', '90m', '45s', '500ms', '2w' → milliseconds (EXPIRES IN)."""
    match = _DURATION.match(text)
    if match is None or int(match.group(1)) <= 0:
        raise SqlError(f"bad duration {text!r}: a positive whole number and one of ms, s, m, h, d, w (e.g. '30d')")
    return int(match.group(1)) * _UNIT_MS[match.group(2).lower()]


class _Parser:
    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.tokens: list[tuple[str, str, int]] = []
        for match in _TOKEN.finditer(sql):
            kind = match.lastgroup or "other"
            self.tokens.append((kind, match.group(kind), match.start(kind)))
        while self.tokens and self.tokens[-1][1] == ";":
            self.tokens.pop()
        self.i = 0

    # -- tokens ---------------------------------------------------------------------------------
    def _fail(self, expected: str) -> SqlError:
        if self.i < len(self.tokens):
            kind, text, at = self.tokens[self.i]
            shown = "a string" if kind == "string" else repr(text)  # a string may hold a token
            return SqlError(f"expected {expected}, found {shown}", position=position_at(self.sql, at))
        return SqlError(f"expected {expected} at the end of the statement")

    def _peek(self, *words: str) -> bool:
        if self.i + len(words) > len(self.tokens):
            return False
        return all(
            kind == "word" and text.upper() == word
            for (kind, text, _), word in zip(self.tokens[self.i : self.i + len(words)], words, strict=True)
        )

    def _accept(self, *words: str) -> bool:
        if self._peek(*words):
            self.i += len(words)
            return True
        return False

    def _expect(self, *words: str) -> None:
        if not self._accept(*words):
            raise self._fail(" ".join(words))

    def _name(self, what: str, *, star: bool = False) -> str:
        if self.i >= len(self.tokens):
            raise self._fail(what)
        kind, text, _ = self.tokens[self.i]
        if kind == "word" or (star and text == "*"):
            value = text
        elif kind == "string":
            value = text[1:-1].replace("''", "'")
        elif kind == "quoted":
            value = text[1:-1].replace('""', '"') if text[0] == '"' else text[1:-1]
        else:
            raise self._fail(what)
        self.i += 1
        return value

    def _string(self, what: str) -> str:
        if self.i < len(self.tokens) and self.tokens[self.i][0] == "string":
            self.i += 1
            return self.tokens[self.i - 1][1][1:-1].replace("''", "'")
        raise self._fail(what)

    def _end(self, statement: AdminStatement) -> AdminStatement:
        if self.i != len(self.tokens):
            raise self._fail("the end of the statement")
        return statement

    # -- statements -----------------------------------------------------------------------------
    def statement(self) -> AdminStatement:
        if self._accept("SHOW"):
            if self._accept("API", "KEYS"):
                return self._end(ShowApiKeys(self._in_org()))
            if self._accept("ACLS"):
                org = self._in_org()
                principal = None
                if self._accept("FOR"):
                    self._accept("PRINCIPAL")
                    principal = self._name("a principal name")
                return self._end(ShowAcls(org, principal))
            self.i += 1  # ORGS / ORGANIZATIONS
            return self._end(ShowOrgs())
        if self._accept("CREATE"):
            if self._accept("API", "KEY"):
                return self._create_key()
            self.i += 1  # ORG / ORGANIZATION
            if_not_exists = self._accept("IF", "NOT", "EXISTS")
            return self._end(CreateOrg(self._name("an organisation name"), if_not_exists))
        if self._accept("GRANT"):
            return self._acl(grant=True)
        self._expect("REVOKE")
        if self._accept("API", "KEY"):
            key = self._name("a key id (e.g. 'shk_0123456789abcdef')")
            return self._end(RevokeApiKey(key.split(".", 1)[0]))
        return self._acl(grant=False)

    def _in_org(self) -> str | None:
        if self._accept("IN"):
            for word in ("ORG", "ORGANIZATION", "ORGANISATION"):
                if self._accept(word):
                    break
            return self._name("an organisation name")
        return None

    def _create_key(self) -> AdminStatement:
        self._expect("FOR")
        self._accept("PRINCIPAL")
        principal = self._name("a principal name")
        org = self._in_org()
        if org is None:
            raise self._fail("IN ORG <organisation>")
        admin, expires, description = False, None, ""
        while self.i < len(self.tokens):
            if self._accept("ADMIN"):
                admin = True
            elif self._accept("EXPIRES", "IN"):
                expires = duration_ms(self._string("a duration string such as '30d'"))
            elif self._accept("COMMENT"):
                description = self._string("a comment string")
            else:
                raise self._fail("ADMIN, EXPIRES IN '<duration>', COMMENT '<text>' or the end")
        return CreateApiKey(org, principal, admin, expires, description)

    def _acl(self, *, grant: bool) -> AdminStatement:
        operations: list[str] = []
        while True:
            op = self._name("an operation (" + ", ".join(o.upper() for o in OPERATIONS) + " or ALL)").lower()
            if op == "all":
                operations.extend(OPERATIONS)
            elif op in OPERATIONS:
                operations.append(op)
            else:
                self.i -= 1
                raise self._fail("an operation (" + ", ".join(o.upper() for o in OPERATIONS) + " or ALL)")
            if not (self.i < len(self.tokens) and self.tokens[self.i][1] == ","):
                break
            self.i += 1
        self._expect("ON")
        resource_type = self._name("TOPIC, GROUP, JOB, SUBJECT or TRANSACTIONAL_ID").lower()
        if resource_type not in RESOURCE_TYPES:
            self.i -= 1
            raise self._fail("TOPIC, GROUP, JOB, SUBJECT or TRANSACTIONAL_ID")
        pattern = "prefixed" if self._accept("PREFIXED") or self._accept("PREFIX") else "literal"
        name = self._name("a resource name ('*' for every name)", star=True)
        self._expect("TO" if grant else "FROM")
        self._accept("PRINCIPAL")
        principal = self._name("a principal name")
        org = self._in_org()
        if org is None:
            raise self._fail("IN ORG <organisation>")
        unique = tuple(dict.fromkeys(operations))
        return self._end(ChangeAcl(grant, unique, resource_type, pattern, name, org, principal))
