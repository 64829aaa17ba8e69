"""Nexmark queries q0, q1, q2, q3, q4, q5, q6, q7, q8, q9 and q11 as SQL over the `streamhouse.datagen.nexmark` tables.

The texts are those of the Flink `nexmark` repository (`nexmark-flink/src/main/resources/
queries/`), changed in syntax only:

- columns are snake_case (`dateTime` → `date_time`), because DataFusion folds unquoted
  identifiers to lower case;
- the `INSERT INTO nexmark_qN` sink is dropped: each text is the SELECT;
- q2's `MOD(auction, 123) = 0` is written `auction % 123 = 0` (DataFusion has no MOD function;
  equal for the positive ids the generator makes);
- q11 uses the SESSION window table function
  `TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(date_time), INTERVAL '10' SECOND))`
  instead of Flink's legacy `GROUP BY SESSION(dateTime, …)` / `SESSION_START` / `SESSION_END`;
  the same sessions, window_start/window_end standing for SESSION_START/SESSION_END;
- every query ends with an ORDER BY over all its output columns, so a result is one
  deterministic sequence (a streaming sink has no order; a test needs one).

Window table functions (TUMBLE, HOP, SESSION) keep Flink's syntax and are turned into plain SQL
by `streamhouse.sql.windows.rewrite.rewrite_windows` before DataFusion runs them. Window sizes are the
Flink repository's: 10 s tumbling windows; q5 hops every 2 s over 10 s; q11's session gap is 10 s.
"""

from __future__ import annotations

from typing import Final

Q0: Final = """\
SELECT auction, bidder, price, date_time, extra
FROM bid
ORDER BY auction, bidder, price, date_time, extra"""

# Currency conversion: dollars to euros at Flink's rate 0.908 (a DOUBLE in DataFusion,
# DECIMAL(23, 3) in Flink).
Q1: Final = """\
SELECT
    auction,
    bidder,
    0.908 * price AS price,
    date_time,
    extra
FROM bid
ORDER BY auction, bidder, price, date_time, extra"""

# Selection: bids on every 123rd auction.
Q2: Final = """\
SELECT auction, price
FROM bid
WHERE auction % 123 = 0
ORDER BY auction, price"""

# Local item suggestion: sellers in OR, ID or CA of auctions in category 10 (a regular join; as
# a continuous job it needs a state TTL, sql/streaming/regular_join.py).
Q3: Final = """\
SELECT P.name, P.city, P.state, A.id
FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA')
ORDER BY P.name, P.city, P.state, A.id"""

# Average final price per category (Flink's q4), and its inner query: each closed auction's
# final (highest) bid price. As a continuous job the inner query is a lifetime join
# (sql/streaming/life_plan.py: final per auction once the watermark passes `expires`) and the
# outer AVG, which never closes on a stream, an updating aggregate over it emitting changes
# (sql/streaming/life_agg.py; the job needs 'emit' = 'changes').
Q4_PER_AUCTION: Final = """\
SELECT A.id, A.category, MAX(B.price) AS final
FROM auction A, bid B
WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
GROUP BY A.id, A.category"""

Q4: Final = f"""\
SELECT Q.category, AVG(Q.final) AS avg_final
FROM ({Q4_PER_AUCTION}) Q
GROUP BY Q.category
ORDER BY Q.category"""

# Average selling price by seller (Flink's q6): each closed auction's final price averaged with
# the seller's previous ten, ordered by the auction's last bid time. Flink's text selects
# B.dateTime under GROUP BY A.id; it is MAX(B.date_time) here (the last bid inside the life).
# As a job it is a lifetime join with an OVER across its rows (sql/streaming/life_over.py),
# emitted as changes because auctions close out of that order.
Q6: Final = """\
SELECT Q.seller,
    AVG(Q.final) OVER (PARTITION BY Q.seller ORDER BY Q.date_time ROWS BETWEEN 10 PRECEDING AND CURRENT ROW)
        AS avg_final
FROM (
    SELECT MAX(B.price) AS final, A.seller, MAX(B.date_time) AS date_time
    FROM auction AS A, bid AS B
    WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
    GROUP BY A.id, A.seller
) AS Q"""

# Winning bids: each auction's highest bid inside its life (Flink's q9). Ties broken by the
# earlier bid, then the lower bidder (added here: Flink leaves equal price and time to chance).
Q9: Final = """\
SELECT id, item_name, description, initial_bid, reserve, date_time, expires, seller, category, extra,
    auction, bidder, price, bid_date_time, bid_extra
FROM (
    SELECT A.*, B.auction, B.bidder, B.price, B.date_time AS bid_date_time, B.extra AS bid_extra,
        ROW_NUMBER() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.date_time ASC, B.bidder ASC) AS rownum
    FROM auction A, bid B
    WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
) W
WHERE rownum <= 1
ORDER BY id"""

# Hot items: the auctions with the most bids in each 10 s window sliding by 2 s.
Q5: Final = """\
SELECT AuctionBids.auction, AuctionBids.num
FROM (
    SELECT
        auction,
        count(*) AS num,
        window_start AS starttime,
        window_end AS endtime
    FROM TABLE(
        HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
    GROUP BY auction, window_start, window_end
) AS AuctionBids
JOIN (
    SELECT
        max(CountBids.num) AS maxn,
        CountBids.starttime,
        CountBids.endtime
    FROM (
        SELECT
            count(*) AS num,
            window_start AS starttime,
            window_end AS endtime
        FROM TABLE(
            HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
        GROUP BY auction, window_start, window_end
    ) AS CountBids
    GROUP BY CountBids.starttime, CountBids.endtime
) AS MaxBids
ON AuctionBids.starttime = MaxBids.starttime
    AND AuctionBids.endtime = MaxBids.endtime
    AND AuctionBids.num >= MaxBids.maxn
ORDER BY AuctionBids.auction, AuctionBids.num"""

# Highest bid: the bids at each 10 s tumbling window's maximum price (a join with the window
# maxima; BETWEEN is inclusive at both ends, as in Flink's text).
Q7: Final = """\
SELECT B.auction, B.bidder, B.price, B.date_time, B.extra
FROM bid B
JOIN (
    SELECT MAX(price) AS maxprice, window_end AS date_time
    FROM TABLE(
        TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
    GROUP BY window_start, window_end
) B1
ON B.price = B1.maxprice
WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10' SECOND AND B1.date_time
ORDER BY B.auction, B.bidder, B.price, B.date_time, B.extra"""

# Monitor new users: people who registered and opened an auction in the same 10 s window.
Q8: Final = """\
SELECT P.id, P.name, P.starttime
FROM (
    SELECT id, name,
        window_start AS starttime,
        window_end AS endtime
    FROM TABLE(
        TUMBLE(TABLE person, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
    GROUP BY id, name, window_start, window_end
) P
JOIN (
    SELECT seller,
        window_start AS starttime,
        window_end AS endtime
    FROM TABLE(
        TUMBLE(TABLE auction, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
    GROUP BY seller, window_start, window_end
) A
ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime
ORDER BY P.id, P.name, P.starttime"""

# User sessions: bids per bidder session (sessions end after a 10 s gap).
Q11: Final = """\
SELECT
    bidder,
    count(*) AS bid_count,
    window_start AS starttime,
    window_end AS endtime
FROM TABLE(
    SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY bidder, window_start, window_end
ORDER BY bidder, bid_count, starttime, endtime"""

QUERIES: Final[dict[str, str]] = {
    "q0": Q0,
    "q1": Q1,
    "q2": Q2,
    "q3": Q3,
    "q5": Q5,
    "q7": Q7,
    "q8": Q8,
    "q11": Q11,
}

# The queries that need `rewrite_windows` before DataFusion can plan them.
WINDOWED_QUERIES: Final = frozenset({"q5", "q7", "q8", "q11"})
