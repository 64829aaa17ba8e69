"""Ad-hoc SQL through Daft, locally or on a Ray cluster (`streamhouse sql --engine daft` or
`--engine ray://host:port`): the pruned committed segment files of each topic the query reads,
read by Daft straight from the object store, plus the unflushed tails fetched from the agents.

- `layout.py`: a segment file's physical columns → the topic's SQL columns (format v1 and v2)
- `dialect.py`: our SQL → Daft's (every difference rewritten or refused), `windows.py`: window TVFs
- `sources.py`: the segment files and tails of one topic as a Daft DataFrame
- `run.py`: choose the runner (native or Ray), run a statement, results typed like DataFusion's

Daft and Ray are the optional `daft` extra; nothing imports this package unless asked to, so
`import streamhouse` never imports them.
"""
